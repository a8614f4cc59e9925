"""Exact leaf SPTEs of the TDP MMU, from the `kvmmmu:kvm_tdp_mmu_spte_changed`
tracepoint.

The TDP MMU reports every SPTE change (`handle_changed_spte` in
arch/x86/kvm/mmu/tdp_mmu.c, and the children of a removed page table in
`handle_removed_pt`) with as_id, gfn, level and the old and new SPTE. Folding
those events gives the present leaves of every root, each named by (as_id,
gfn, level): no guest run, no inference from counts, and leaves the vector
never asked for (a split, a recovered huge page, a stale leaf of a deleted
slot) show up too. The shadow MMU has no such tracepoint for its rmap zaps,
which is why observe.py re-touches there instead.

A private tracefs instance keeps other tracing on the machine undisturbed.
Needs a writable tracefs (root); probe.py says when it is not there.
"""
from __future__ import annotations

import errno
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

EVENT = "kvmmmu/kvm_tdp_mmu_spte_changed"
SPTE_PRESENT = 1 << 11  # SPTE_MMU_PRESENT_MASK: MMIO and frozen SPTEs lack it (arch/x86/kvm/mmu/spte.h)
SPTE_HUGE = 1 << 7  # PT_PAGE_SIZE_MASK: a leaf above 4K
INSTANCE_PREFIX = "kvm_conformance_"  # + the owning pid
BUFFER_KB = 8192  # per CPU; a 1024-page populate is ~1,100 events of ~100 bytes
LINE = re.compile(rb"as id (\d+) gfn ([0-9a-f]+) level (\d+) old_spte ([0-9a-f]+) new_spte ([0-9a-f]+)")

Leaf = tuple[int, int, int]  # (as_id, gfn, level), level 1 = 4K


class TraceError(RuntimeError):
    """The trace cannot be trusted (lost events, unreadable instance)."""


def is_leaf(spte: int, level: int) -> bool:
    """A present leaf (`is_shadow_present_pte` and `is_last_spte`)."""
    return bool(spte & SPTE_PRESENT) and (level == 1 or bool(spte & SPTE_HUGE))


@dataclass(frozen=True)
class Change:
    as_id: int
    gfn: int
    level: int
    old: int
    new: int


def parse(chunk: bytes) -> Iterator[Change]:
    for m in LINE.finditer(chunk):
        yield Change(int(m[1]), int(m[2], 16), int(m[3]), int(m[4], 16), int(m[5], 16))


def remove_stale(root: Path) -> None:
    """Remove this backend's instances whose process is gone (killed before
    its exit handler ran): each holds its ring buffers until removed."""
    for instance in (root / "instances").glob(f"{INSTANCE_PREFIX}*"):
        pid = instance.name[len(INSTANCE_PREFIX):]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            try:
                instance.rmdir()
            except OSError:
                pass


def tracefs_root() -> Optional[Path]:
    for path in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (path / "events" / EVENT).is_dir():
            return path
    return None


class SpteTrace:
    """One tracefs instance with only the SPTE-change event enabled, drained
    through a non-blocking trace_pipe into a Counter of present leaves."""

    def __init__(self, root: Path, name: str) -> None:
        self.dir = root / "instances" / name
        try:
            self.dir.mkdir()
        except FileExistsError:  # left by a killed run of this pid
            pass
        self.fd = -1
        try:
            (self.dir / "buffer_size_kb").write_text(str(BUFFER_KB))
            (self.dir / "events" / EVENT / "enable").write_text("1")
            self.fd = os.open(self.dir / "trace_pipe", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise
        self.buf = bytearray(1 << 20)  # preallocated: a fresh bytes per read could munmap and trace itself
        self.leaves: Counter[Leaf] = Counter()
        self.lost = self.overrun()  # the counter is cumulative per instance

    def reset(self) -> None:
        """Forget everything so far: a new VM starts with no SPTEs."""
        self.drain()
        self.leaves.clear()

    def drain(self) -> None:
        """Fold every pending event into `leaves`."""
        view = memoryview(self.buf)
        tail = b""
        while True:
            try:
                n = os.readv(self.fd, [view])
            except BlockingIOError:
                break
            except OSError as err:
                if err.errno == errno.EINTR:
                    continue
                raise
            if n == 0:
                break
            data = tail + bytes(view[:n])
            cut = data.rfind(b"\n") + 1
            self.fold(data[:cut])
            tail = data[cut:]
        self.fold(tail)
        lost = self.overrun()
        if lost != self.lost:
            self.lost = lost
            raise TraceError(f"the trace lost events (buffer {BUFFER_KB} KiB per CPU): the leaves are unknown")

    def fold(self, chunk: bytes) -> None:
        for c in parse(chunk):
            if is_leaf(c.old, c.level):
                key = (c.as_id, c.gfn, c.level)
                self.leaves[key] -= 1
                if self.leaves[key] <= 0:
                    del self.leaves[key]
            if is_leaf(c.new, c.level):
                self.leaves[(c.as_id, c.gfn, c.level)] += 1

    def overrun(self) -> int:
        total = 0
        for cpu in (self.dir / "per_cpu").glob("cpu*"):
            for line in (cpu / "stats").read_text().splitlines():
                if line.startswith("overrun:"):
                    total += int(line.split()[1])
        return total

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            (self.dir / "events" / EVENT / "enable").write_text("0")
            self.dir.rmdir()
        except OSError:
            pass
