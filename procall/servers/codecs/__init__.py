"""Proto <-> domain conversions, one module per area (no servicer imports)."""
