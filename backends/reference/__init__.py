"""The pure-Python reference MMU: small, obviously correct, both profiles."""

__version__ = "0.1.0"
