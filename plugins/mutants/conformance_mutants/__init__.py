"""Mutants of the reference backend: each breaks one spec rule the way a kernel developer might."""

__version__ = "0.1.0"
