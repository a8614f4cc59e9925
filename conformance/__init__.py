"""kvm-mmu-conformance: which SPTEs a host event zaps, checked across implementations."""

# MAJOR.MINOR.PATCH: MAJOR is the vector format (schema.FORMAT), MINOR grows
# with the suite and the spec, PATCH fixes (CHANGELOG.md).
__version__ = "1.0.0"
