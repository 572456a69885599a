"""Throwaway backend servers (PostgreSQL, OpenLDAP) and skip/fail policy for the test suite.

Redis lives in :mod:`procall.launch.redis` because ``procall up`` uses it too.
"""
