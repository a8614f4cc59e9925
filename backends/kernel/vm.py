"""One live VM: memslots with their host backing, one vCPU running the
guest, the stats fds; every resource released in close()."""
from __future__ import annotations

import ctypes
import mmap as pymmap
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

from . import guest
from . import ioctl as k
from .hugetlb import GIANT, map_giant
from .reuse import Device
from .stats import Stats

PAGE = guest.PAGE
VM_STATS = ("remote_tlb_flush_requests", "pages_4k", "pages_2m", "pages_1g")
VCPU_STATS = ("pf_fixed",)
PASS_CPU_SECONDS = 2.0  # a pass touches at most 32768 pages: ~0.2 s at the measured 6 us per fault


class GuestError(RuntimeError):
    """The guest did something other than finish its pass."""


class GuestTimeout(GuestError):
    pass


class MemoryFault(GuestError):
    """KVM_EXIT_MEMORY_FAULT: the page's attribute and its backing disagree
    (e.g. private in a slot without guest_memfd): KVM maps nothing there."""

    def __init__(self, gpa: int) -> None:
        super().__init__(f"KVM_EXIT_MEMORY_FAULT at GPA {gpa:#x}")
        self.gpa = gpa


@contextmanager
def bounded_passes() -> Iterator[bool]:
    """Arm SIGPROF so a pass that burns PASS_CPU_SECONDS of CPU ends with
    GuestTimeout (KVM_RUN returns EINTR, the handler raises). Only the main
    thread can own signal handlers; elsewhere the runner's deadline is the
    only bound."""
    if threading.current_thread() is not threading.main_thread():
        yield False
        return

    def expire(signum: int, frame: object) -> None:
        raise GuestTimeout(f"guest pass exceeded {PASS_CPU_SECONDS} s of CPU time")

    previous = signal.signal(signal.SIGPROF, expire)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


@dataclass
class Region:
    """A memslot and its host backing. `addr` is the userspace mapping
    (anonymous, or the guest_memfd's own mmap for MMAP files)."""

    kvm_slot: int
    gpa: int
    npages: int
    flags: int
    addr: int
    gmem_fd: Optional[int] = None
    giant: tuple[int, ...] = ()  # offsets of the 1 GiB hugetlb blocks in the backing

    def giant_blocks(self) -> list[tuple[int, int]]:
        """[start, end) GPAs of the hugetlb blocks: the host mm invalidates these only whole."""
        return [(self.gpa + off, self.gpa + off + GIANT) for off in self.giant]

    @property
    def size(self) -> int:
        return self.npages * PAGE

    def hva(self, gpa: int) -> int:
        return self.addr + (gpa - self.gpa)


class LiveVm:
    def __init__(self, device: Device, vm_type: int = 0) -> None:
        self.device = device
        self.fds: list[int] = []  # closed in reverse order
        self.maps: list[tuple[int, int]] = []  # (addr, length), unmapped after the fds
        self.regions: dict[int, Region] = {}
        self.vcpu: Optional[int] = None
        self.run_area: Optional[pymmap.mmap] = None
        self.sys_mem: Optional[memoryview] = None
        self.mmio_gpa = 0
        self.sys_npages = 0
        self.vcpu_stats: Optional[Stats] = None
        self.timed = False
        self.smm = False  # the vCPU is in SMM: its accesses go through address space 1
        self.smm_alias = False  # the system slot is also in address space 1
        try:
            self.fd = self.own(k.ioctl(device.fd, k.KVM_CREATE_VM, vm_type))
            self.stats = Stats(self.own(k.ioctl(self.fd, k.KVM_GET_STATS_FD)), VM_STATS)
        except BaseException:
            self.close()
            raise

    # -- bookkeeping
    def own(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def map(self, length: int, fd: int = -1, align_to: int = 0, align: int = guest.HUGE) -> int:
        """A shared mapping of `fd`, or anonymous memory placed so that its
        address is congruent to `align_to` modulo `align`: a huge SPTE needs
        the host address and the GPA equally aligned (lpage_info)."""
        if fd >= 0:
            addr = k.mmap(length, pymmap.PROT_READ | pymmap.PROT_WRITE, pymmap.MAP_SHARED, fd)
            self.maps.append((addr, length))
            return addr
        flags = pymmap.MAP_PRIVATE | pymmap.MAP_ANONYMOUS | k.MAP_NORESERVE
        raw = k.mmap(length + align, pymmap.PROT_READ | pymmap.PROT_WRITE, flags)
        self.maps.append((raw, length + align))
        return raw + (align_to - raw) % align

    def map_giant(self, addr: int) -> None:
        """Replace 1 GiB of a slot's anonymous backing with a hugetlb page
        (the reservation's munmap in close() unmaps it too)."""
        self.own(map_giant(addr))

    def close(self) -> None:
        """Release everything; safe to call twice and after a failed init."""
        self.sys_mem = None
        if self.run_area is not None:
            self.run_area.close()
            self.run_area = None
        while self.fds:
            os.close(self.fds.pop())
        while self.maps:
            k.munmap(*self.maps.pop())
        self.vcpu = None

    def __enter__(self) -> "LiveVm":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- VM-level operations
    def check(self, cap: int) -> int:
        try:
            return k.ioctl(self.fd, k.KVM_CHECK_EXTENSION, cap)
        except OSError:
            return 0

    def disable_quirks(self, mask: int) -> None:
        cap = k.EnableCap(cap=k.KVM_CAP_DISABLE_QUIRKS2)
        cap.args[0] = mask
        k.ioctl(self.fd, k.KVM_ENABLE_CAP, cap)

    def set_region(self, region: Region, gpa: int, size: int) -> None:
        r = k.UserspaceMemoryRegion2(slot=region.kvm_slot, flags=region.flags, guest_phys_addr=gpa,
                                     memory_size=size, userspace_addr=region.addr)
        if region.gmem_fd is not None:
            r.guest_memfd, r.guest_memfd_offset = region.gmem_fd, 0
            k.ioctl(self.fd, k.KVM_SET_USER_MEMORY_REGION2, r)
        else:
            k.ioctl(self.fd, k.KVM_SET_USER_MEMORY_REGION, r)  # the first 32 bytes are the v1 layout

    def add_region(self, kvm_slot: int, gpa: int, npages: int, flags: int = 0,
                   gmem_flags: Optional[int] = None, huge: tuple[int, ...] = (),
                   giant: tuple[int, ...] = ()) -> Region:
        """A memslot backed by fresh anonymous memory, or by a guest_memfd
        (mmap'ed as the userspace address when it allows MMAP). Anonymous
        memory gets THPs only in the 2 MiB blocks at the GPAs in `huge`:
        elsewhere a host THP would turn a 4K MADV_DONTNEED into a 2 MiB
        invalidation (spec §2.3). The 1 GiB blocks at `giant` get hugetlb
        pages."""
        gmem_fd = None
        if gmem_flags is not None:
            gmem_fd = self.own(k.ioctl(self.fd, k.KVM_CREATE_GUEST_MEMFD,
                                       k.CreateGuestMemfd(size=npages * PAGE, flags=gmem_flags)))
            flags |= k.KVM_MEM_GUEST_MEMFD
        via_gmem = gmem_fd is not None and gmem_flags & k.GUEST_MEMFD_FLAG_MMAP
        addr = self.map(npages * PAGE, gmem_fd if via_gmem else -1, gpa, GIANT if giant else guest.HUGE)
        if not via_gmem:
            k.madvise(addr, npages * PAGE, k.MADV_NOHUGEPAGE)
            for block in huge:  # 2 MiB-aligned in both spaces: the VMA splits without an invalidation
                k.madvise(addr + block - gpa, guest.HUGE, k.MADV_HUGEPAGE)
            for block in giant:
                self.map_giant(addr + block - gpa)
        region = Region(kvm_slot, gpa, npages, flags, addr, gmem_fd, tuple(block - gpa for block in giant))
        self.set_region(region, gpa, region.size)
        self.regions[kvm_slot] = region
        return region

    def set_flags(self, region: Region, flags: int) -> int:
        """The region's own base and size with new flags (KVM_MR_FLAGS_ONLY)."""
        old, region.flags = region.flags, flags
        try:
            self.set_region(region, region.gpa, region.size)
        except OSError as err:
            region.flags = old
            return err.errno
        return 0

    def delete_region(self, region: Region) -> int:
        try:
            self.set_region(region, region.gpa, 0)
        except OSError as err:
            return err.errno
        del self.regions[region.kvm_slot]
        return 0

    def move_region(self, region: Region, gpa: int) -> int:
        try:
            self.set_region(region, gpa, region.size)
        except OSError as err:
            return err.errno
        region.gpa = gpa
        return 0

    # -- the guest
    def start_guest(self, cpuid: k.Cpuid2, sys_slot: int, sys_gpa: int, mmio_gpa: int,
                    small: list[int], huge: list[int], giant: list[int], smm: bool = False) -> None:
        """System slot (page tables, code, control page) and the vCPU at CPL3.
        With `smm` the system slot is in address space 1 too (the same host
        memory): a vCPU in SMM sees only that address space's memslots."""
        self.sys_npages = guest.sys_pages(len(small))
        region = self.add_region(sys_slot, sys_gpa, self.sys_npages)
        if smm:
            alias = Region(1 << 16 | sys_slot, sys_gpa, self.sys_npages, 0, region.addr)
            self.set_region(alias, sys_gpa, alias.size)
            self.smm_alias = True
        self.sys_mem = memoryview((ctypes.c_char * region.size).from_address(region.addr)).cast("B")
        self.mmio_gpa = mmio_gpa
        guest.build_system(self.sys_mem, sys_gpa, mmio_gpa, small, huge, giant)
        self.create_vcpu(cpuid)
        sregs = k.Sregs()
        k.ioctl(self.vcpu, k.KVM_GET_SREGS, sregs)
        code = dict(base=0, limit=0xFFFFFFFF, selector=0x33, type=0xB, present=1, dpl=3, db=0, s=1, l=1, g=1)
        data = dict(base=0, limit=0xFFFFFFFF, selector=0x2B, type=0x3, present=1, dpl=3, db=1, s=1, l=0, g=1)
        sregs.cs = k.Segment(**code)
        for name in ("ds", "es", "fs", "gs", "ss"):
            setattr(sregs, name, k.Segment(**data))
        sregs.tr = k.Segment(base=0, limit=0x67, selector=0, type=0xB, present=1, s=0)
        sregs.ldt = k.Segment(unusable=1)
        sregs.cr3 = sys_gpa + guest.PML4 * PAGE
        sregs.cr0, sregs.cr4, sregs.efer = 0x80050033, 0x20, 0xD01  # PG|WP|NE|ET|MP|PE; PAE; NXE|LMA|LME|SCE
        k.ioctl(self.vcpu, k.KVM_SET_SREGS, sregs)
        k.ioctl(self.vcpu, k.KVM_SET_REGS, k.Regs(rip=guest.CODE_VA, rflags=0x202))

    def create_vcpu(self, cpuid: k.Cpuid2) -> None:
        if self.vcpu is not None:
            return
        vcpu = self.own(k.ioctl(self.fd, k.KVM_CREATE_VCPU, 0))
        # Open the vCPU stats fd before any KVM_RUN: the ioctl waits on vcpu->mutex.
        self.vcpu_stats = Stats(self.own(k.ioctl(vcpu, k.KVM_GET_STATS_FD)), VCPU_STATS)
        self.run_area = pymmap.mmap(vcpu, self.device.vcpu_mmap_size(), pymmap.MAP_SHARED,
                                    pymmap.PROT_READ | pymmap.PROT_WRITE)
        k.ioctl(vcpu, k.KVM_SET_CPUID2, cpuid)
        self.vcpu = vcpu

    def set_smm(self, on: bool) -> None:
        """Enter or leave SMM (KVM_SET_VCPU_EVENTS, smi.smm): KVM switches the
        vCPU's MMU to the other address space and nothing else."""
        if on == self.smm:
            return
        events = k.VcpuEvents()
        k.ioctl(self.vcpu, k.KVM_GET_VCPU_EVENTS, events)
        events.flags, events.smi_smm = k.KVM_VCPUEVENT_VALID_SMM, int(on)
        k.ioctl(self.vcpu, k.KVM_SET_VCPU_EVENTS, events)
        self.smm = on

    def run_pass(self, va: int, count: int, mode: int, as_id: int = 0) -> None:
        """One bounded pass over `count` pages from guest VA `va`, in the
        address space `as_id` (1: in SMM)."""
        assert self.vcpu is not None and self.sys_mem is not None and self.run_area is not None
        self.set_smm(as_id == 1)
        guest.set_pass(self.sys_mem, va, count, mode)
        if self.timed:
            signal.setitimer(signal.ITIMER_PROF, PASS_CPU_SECONDS)
        run = self.run_area
        try:
            k.ioctl(self.vcpu, k.KVM_RUN)
        except OSError as err:
            reason = int.from_bytes(run[k.RUN_EXIT_REASON:k.RUN_EXIT_REASON + 4], "little")
            if reason == k.KVM_EXIT_MEMORY_FAULT:
                k.ioctl(self.vcpu, k.KVM_SET_REGS, k.Regs(rip=guest.CODE_VA, rflags=0x202))  # next pass from the top
                raise MemoryFault(int.from_bytes(run[k.RUN_MEMORY_FAULT_GPA:k.RUN_MEMORY_FAULT_GPA + 8], "little"))
            raise GuestError(f"KVM_RUN failed: {err.strerror} (pass {va:#x}+{count} mode {mode})") from None
        finally:
            if self.timed:
                signal.setitimer(signal.ITIMER_PROF, 0)
        reason = int.from_bytes(run[k.RUN_EXIT_REASON:k.RUN_EXIT_REASON + 4], "little")
        phys = int.from_bytes(run[k.RUN_MMIO_PHYS_ADDR:k.RUN_MMIO_PHYS_ADDR + 8], "little")
        if reason != k.KVM_EXIT_MMIO or phys != self.mmio_gpa or not run[k.RUN_MMIO_IS_WRITE]:
            raise GuestError(f"unexpected exit {k.EXIT_NAMES.get(reason, reason)} (phys {phys:#x}) "
                             f"in pass {va:#x}+{count} mode {mode}")

    def system_pass(self) -> None:
        """Read every system page through its alias: afterwards each one has
        a leaf, whatever zapped it, on a shadow or a TDP MMU alike (in both
        address spaces when the system slot is in both)."""
        for as_id in (0, 1) if self.smm_alias else (0,):
            self.run_pass(guest.SYS_ALIAS_VA, self.sys_npages, guest.MODE_READ, as_id)

    def pf_fixed(self) -> int:
        assert self.vcpu_stats is not None
        return self.vcpu_stats.read("pf_fixed")

    def set_msrs(self, entries: list[tuple[int, int]]) -> int:
        msrs = k.Msrs(nmsrs=len(entries))
        for i, (index, value) in enumerate(entries):
            msrs.entries[i] = k.MsrEntry(index=index, data=value)
        assert self.vcpu is not None
        return k.ioctl(self.vcpu, k.KVM_SET_MSRS, msrs)

    def toggle_cr0_cd(self) -> None:
        """Set CR0.CD, then restore CR0: the cache-disable write of §5.5."""
        assert self.vcpu is not None
        sregs = k.Sregs()
        k.ioctl(self.vcpu, k.KVM_GET_SREGS, sregs)
        cr0 = sregs.cr0
        sregs.cr0 = cr0 | 1 << 30
        k.ioctl(self.vcpu, k.KVM_SET_SREGS, sregs)
        sregs.cr0 = cr0
        k.ioctl(self.vcpu, k.KVM_SET_SREGS, sregs)
