"""The `rust` backend: the crate's model (`_mmu`) behind a thin adapter.

Importing this package does not load the extension, so the encoder can
also serve `cargo test` (tools/export_vectors.py) without a build.
"""
