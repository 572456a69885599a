"""Benchmarks run by ``procall bench``: they start real topologies and print figures."""
