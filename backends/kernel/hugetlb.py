"""1 GiB hugetlb pages for 1G leaves.

Each 1G leaf's block of a slot is a MAP_SHARED mapping of its own hugetlb
memfd; the page goes back to the machine's pool when the VM closes. The pool
is shared by every process (pytest -n workers), so a page that is not free
yet is waited for a while: another worker's vector gives it back. The page
is populated (zeroed) at mmap, outside the guest's timed passes: that takes
2-4 s under emulation.
"""
from __future__ import annotations

import errno
import mmap as pymmap
import os
import time
from pathlib import Path

from . import ioctl as k

GIANT = 1 << 30
SYSFS = Path("/sys/kernel/mm/hugepages/hugepages-1048576kB")
WAIT_SECONDS = 30.0


def free_pages() -> int:
    """1 GiB pages reserved and free on this machine (0 without the pool)."""
    try:
        return int((SYSFS / "free_hugepages").read_text())
    except (OSError, ValueError):
        return 0


def map_giant(at: int) -> int:
    """Map a fresh 1 GiB hugetlb page at `at` (MAP_FIXED); returns its memfd,
    which the caller closes after unmapping. The page is reserved at mmap
    time, so ENOMEM here means none is free."""
    fd = os.memfd_create("kvm-conformance-1g", os.MFD_CLOEXEC | os.MFD_HUGETLB | os.MFD_HUGE_1GB)
    deadline = time.monotonic() + WAIT_SECONDS
    try:
        os.ftruncate(fd, GIANT)
        while True:
            try:
                k.mmap(GIANT, pymmap.PROT_READ | pymmap.PROT_WRITE, pymmap.MAP_SHARED | k.MAP_FIXED | k.MAP_POPULATE, fd,
                       at=at)
                return fd
            except OSError as err:
                if err.errno != errno.ENOMEM or time.monotonic() > deadline:
                    raise OSError(err.errno, f"no 1 GiB hugetlb page became free in {WAIT_SECONDS:.0f} s "
                                             f"({SYSFS}/free_hugepages={free_pages()})") from None
                time.sleep(0.05)
    except BaseException:
        os.close(fd)
        raise
