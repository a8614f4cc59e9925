"""The emulated-guest runner: build a small kernel, boot it under QEMU's TCG
emulator (AMD SVM with nested paging), run the same suite inside and bring
the results back. The guest is another machine, not a backend (docs/guest.md).
"""
