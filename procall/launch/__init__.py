"""Launchers for the local infrastructure procall depends on (used by ``procall up`` and tests)."""
