"""What this host's KVM can do, asked of the kernel and never assumed."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import hugetlb
from . import ioctl as k
from . import trace

DEVICE_ENV = "KVM_CONFORMANCE_DEVICE"
DEFAULT_DEVICE = "/dev/kvm"
PARAMS = Path("/sys/module")
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
VM_TYPE_NAMES = ("DEFAULT", "SW_PROTECTED", "SEV", "SEV_ES", "SNP", "TDX")  # KVM_X86_*_VM = index
LAUNCHABLE = ("DEFAULT", "SW_PROTECTED")  # VM types whose guest needs no launch protocol


@dataclass(frozen=True)
class VmCaps:
    """KVM_CHECK_EXTENSION on a VM fd: where it differs from /dev/kvm (6.12
    answers guest_memfd and memory attributes per VM type)."""

    guest_memfd: bool
    gmem_flags: int
    memory_attributes: int


@dataclass(frozen=True)
class Probe:
    device: str
    release: str
    api_version: int
    vm_types: int  # KVM_CAP_VM_TYPES bitmask (1 << KVM_X86_DEFAULT_VM when the cap is absent)
    user_memory2: bool
    guest_memfd: bool
    gmem_flags: int  # KVM_CAP_GUEST_MEMFD_FLAGS
    memory_attributes: int  # KVM_CAP_MEMORY_ATTRIBUTES: the supported attribute mask
    quirks: int  # KVM_CAP_DISABLE_QUIRKS2: the quirks that can be disabled
    readonly_mem: bool
    smm: bool
    address_spaces: int
    binary_stats: bool
    nr_memslots: int
    phys_bits: int  # guest MAXPHYADDR from KVM_GET_SUPPORTED_CPUID leaf 0x80000008
    tdp_mmu: Optional[str]  # the module parameter as read, None when unreadable
    npt: Optional[str]  # kvm_amd.npt (or kvm_intel.ept), None when neither module is there
    eager_page_split: Optional[str]
    tracefs: Optional[Path]  # a tracefs with the TDP MMU's SPTE event, writable by this process
    thp: Optional[str]  # the selected transparent_hugepage mode, None when unreadable
    giant_pages: int  # free 1 GiB hugetlb pages
    gbpages: bool  # the guest may use 1 GiB pages (CPUID 0x80000001 EDX.Page1GB in KVM_GET_SUPPORTED_CPUID)
    per_vm: dict[str, VmCaps]  # launchable VM type -> its VM-fd answers

    @property
    def vm_type_names(self) -> tuple[str, ...]:
        return tuple(n for i, n in enumerate(VM_TYPE_NAMES) if self.vm_types >> i & 1)

    @property
    def tdp_mmu_on(self) -> bool:
        return self.tdp_mmu == "Y"

    @property
    def version(self) -> tuple[int, int]:
        """(major, minor) of the running kernel's release string."""
        return release_version(self.release)


def release_version(release: str) -> tuple[int, int]:
    parts = release.split("-", 1)[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return 0, 0


def device_path() -> str:
    return os.environ.get(DEVICE_ENV, DEFAULT_DEVICE)


def open_device(path: str) -> int:
    """Open the KVM device; OSError says why not."""
    return os.open(path, os.O_RDWR | os.O_CLOEXEC)


def check(fd: int, cap: int) -> int:
    try:
        return k.ioctl(fd, k.KVM_CHECK_EXTENSION, cap)
    except OSError:
        return 0


def read_param(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def selected(choices: Optional[str]) -> Optional[str]:
    """'always [madvise] never' -> 'madvise'."""
    if choices is None or "[" not in choices:
        return choices
    return choices.split("[", 1)[1].split("]", 1)[0]


def probe(path: str) -> Probe:
    """Probe the device at `path`; raises OSError when it cannot be opened."""
    fd = open_device(path)
    try:
        api = k.ioctl(fd, k.KVM_GET_API_VERSION)
        types = check(fd, k.KVM_CAP_VM_TYPES) or 1  # without the cap only KVM_X86_DEFAULT_VM exists
        return Probe(
            device=path,
            release=os.uname().release,
            api_version=api,
            vm_types=types,
            user_memory2=bool(check(fd, k.KVM_CAP_USER_MEMORY2)),
            guest_memfd=bool(check(fd, k.KVM_CAP_GUEST_MEMFD)),
            gmem_flags=check(fd, k.KVM_CAP_GUEST_MEMFD_FLAGS),
            memory_attributes=check(fd, k.KVM_CAP_MEMORY_ATTRIBUTES),
            quirks=check(fd, k.KVM_CAP_DISABLE_QUIRKS2),
            readonly_mem=bool(check(fd, k.KVM_CAP_READONLY_MEM)),
            smm=bool(check(fd, k.KVM_CAP_X86_SMM)),
            address_spaces=check(fd, k.KVM_CAP_MULTI_ADDRESS_SPACE) or 1,
            binary_stats=bool(check(fd, k.KVM_CAP_BINARY_STATS_FD)),
            nr_memslots=check(fd, k.KVM_CAP_NR_MEMSLOTS),
            phys_bits=phys_bits(cpuid := supported_cpuid(fd)),
            tdp_mmu=read_param(PARAMS / "kvm/parameters/tdp_mmu"),
            npt=read_param(PARAMS / "kvm_amd/parameters/npt") or read_param(PARAMS / "kvm_intel/parameters/ept"),
            eager_page_split=read_param(PARAMS / "kvm/parameters/eager_page_split"),
            tracefs=writable_tracefs(),
            thp=selected(read_param(THP_ENABLED)),
            giant_pages=hugetlb.free_pages(),
            gbpages=bool(leaf(cpuid, 0x80000001).edx >> 26 & 1) if leaf(cpuid, 0x80000001) else False,
            per_vm={name: vm_caps(fd, VM_TYPE_NAMES.index(name)) for name in LAUNCHABLE
                    if types >> VM_TYPE_NAMES.index(name) & 1},
        )
    finally:
        os.close(fd)


def writable_tracefs() -> Optional[Path]:
    root = trace.tracefs_root()
    return root if root is not None and os.access(root / "instances", os.W_OK) else None


def vm_caps(kvm: int, vm_type: int) -> VmCaps:
    """Ask a throwaway VM of this type; a VM that cannot be created has nothing."""
    try:
        vm = k.ioctl(kvm, k.KVM_CREATE_VM, vm_type)
    except OSError:
        return VmCaps(False, 0, 0)
    try:
        return VmCaps(bool(check(vm, k.KVM_CAP_GUEST_MEMFD)), check(vm, k.KVM_CAP_GUEST_MEMFD_FLAGS),
                      check(vm, k.KVM_CAP_MEMORY_ATTRIBUTES))
    finally:
        os.close(vm)


def supported_cpuid(fd: int) -> k.Cpuid2:
    cpuid = k.Cpuid2(nent=k.MAX_CPUID_ENTRIES)
    k.ioctl(fd, k.KVM_GET_SUPPORTED_CPUID, cpuid)
    return cpuid


def leaf(cpuid: k.Cpuid2, function: int) -> Optional[k.CpuidEntry2]:
    return next((cpuid.entries[i] for i in range(cpuid.nent) if cpuid.entries[i].function == function), None)


def phys_bits(cpuid: k.Cpuid2) -> int:
    entry = leaf(cpuid, 0x80000008)
    return entry.eax & 0xFF if entry else 36  # the architectural default without the leaf
