"""Clients of the Directory and the Lookup, and a server's registration with the Lookup."""
