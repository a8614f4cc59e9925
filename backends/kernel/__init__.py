"""The live-kernel backend: drives the real /dev/kvm and observes real SPTEs."""

__version__ = "0.1.0"
