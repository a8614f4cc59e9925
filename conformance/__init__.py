"""kvm-mmu-conformance: which SPTEs a host event zaps, checked across implementations."""

__version__ = "0.1.0"
