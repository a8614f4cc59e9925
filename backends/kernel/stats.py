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


class Stats:
    """One open stats fd and the offsets of the counters asked for."""

    def __init__(self, fd: int, names: tuple[str, ...]) -> None:
        self.fd = fd
        _, name_size, num_desc, _, desc_offset, data_offset = HEADER.unpack(os.pread(fd, HEADER.size, 0))
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
        self.offsets = {n: offsets[n] for n in names}

    def read(self, name: str) -> int:
        return struct.unpack("<Q", os.pread(self.fd, 8, self.offsets[name]))[0]

    def close(self) -> None:
        os.close(self.fd)
