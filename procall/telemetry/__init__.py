"""Telemetry of procall processes: traces, metrics and logs."""
