"""The UCServer: its composition root, its parts and one servicer module per service."""
