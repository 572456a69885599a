"""The Directory server: composition root and servicer."""
