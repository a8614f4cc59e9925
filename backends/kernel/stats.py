"""KVM binary statistics (KVM_GET_STATS_FD): read named u64 counters.

Layout (Documentation/virt/kvm/api.rst, "KVM_GET_STATS_FD"): a 24-byte
header <6I> (flags, name_size, num_desc, id_offset, desc_offset,
data_offset), then num_desc descriptors of 16 bytes <IhHII> (flags,
exponent, size, offset, bucket_size) each followed by a name_size-byte
name; values are u64 at data_offset + desc.offset. Reads never block and
need no root.
"""
from __future__ import annotations

import os
import struct

HEADER = struct.Struct("<6I")
DESC = struct.Struct("<IhHII")


_LAYOUTS: dict[tuple[bytes, tuple[str, ...]], dict[str, int]] = {}  # (header, names) -> offsets


class Stats:
    """One open stats fd and the offsets of the counters asked for.

    The descriptor table is fixed by the kernel build: it is parsed once per
    header (compared on every fd) and set of names (reuse.py)."""

    def __init__(self, fd: int, names: tuple[str, ...]) -> None:
        self.fd = fd
        header = os.pread(fd, HEADER.size, 0)
        known = _LAYOUTS.get((header, names))
        if known is None:
            known = _LAYOUTS[(header, names)] = self.parse(fd, header, names)
        self.offsets = known

    @staticmethod
    def parse(fd: int, header: bytes, names: tuple[str, ...]) -> dict[str, int]:
        _, name_size, num_desc, _, desc_offset, data_offset = HEADER.unpack(header)
        stride = DESC.size + name_size
        table = os.pread(fd, stride * num_desc, desc_offset)
        offsets: dict[str, int] = {}
        for i in range(num_desc):
            _, _, _, offset, _ = DESC.unpack_from(table, i * stride)
            raw = table[i * stride + DESC.size:(i + 1) * stride]
            offsets[raw.split(b"\0", 1)[0].decode()] = data_offset + offset
        missing = [n for n in names if n not in offsets]
        if missing:
            raise RuntimeError(f"KVM stats lack {', '.join(missing)}")
        return {n: offsets[n] for n in names}

    def read(self, name: str) -> int:
        return struct.unpack("<Q", os.pread(self.fd, 8, self.offsets[name]))[0]

    def close(self) -> None:
        os.close(self.fd)
