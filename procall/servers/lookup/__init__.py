"""The Lookup server: composition root and servicer."""
