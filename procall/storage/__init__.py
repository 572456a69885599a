"""Implementations of the domain ports against the real stores (SQL, Redis, LDAP)."""
