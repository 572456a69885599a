"""Calls: placing, ringing, answering and ending softphone calls, and forwarding them.

Transport- and storage-free: the UCServer wires the stores (Redis), the MediaServers
(through the Lookup) and the event routing in behind the ports.
"""
