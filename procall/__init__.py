"""procall: a multi-server unified-communications platform built as a gRPC service mesh."""

__version__ = "0.1.0"

__all__ = ["__version__"]
