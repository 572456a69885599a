"""The MediaServer: composition root."""
