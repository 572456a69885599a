"""Calls: placing, answering and ending softphone calls, and forwarding them (transport-free).

``procall.calls.forwarding`` holds users' forwarding rules, the checks of the rules a user
sets, and the routing decision the call flow makes with them.
"""
