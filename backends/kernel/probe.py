"""What this host's KVM can do, asked of the kernel and never assumed."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import ioctl as k

DEVICE_ENV = "KVM_CONFORMANCE_DEVICE"
DEFAULT_DEVICE = "/dev/kvm"
TDP_MMU_PARAM = Path("/sys/module/kvm/parameters/tdp_mmu")
TRACEFS = Path("/sys/kernel/tracing")
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")
VM_TYPE_NAMES = ("DEFAULT", "SW_PROTECTED", "SEV", "SEV_ES", "SNP", "TDX")  # KVM_X86_*_VM = index


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
    tracefs: bool  # writable by this process (root); optional extra
    thp: Optional[str]  # the selected transparent_hugepage mode, None when unreadable

    @property
    def vm_type_names(self) -> tuple[str, ...]:
        return tuple(n for i, n in enumerate(VM_TYPE_NAMES) if self.vm_types >> i & 1)

    @property
    def tdp_mmu_on(self) -> bool:
        return self.tdp_mmu == "Y"


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
            phys_bits=phys_bits(supported_cpuid(fd)),
            tdp_mmu=read_param(TDP_MMU_PARAM),
            tracefs=os.access(TRACEFS / "instances", os.W_OK),
            thp=selected(read_param(THP_ENABLED)),
        )
    finally:
        os.close(fd)


def supported_cpuid(fd: int) -> k.Cpuid2:
    cpuid = k.Cpuid2(nent=k.MAX_CPUID_ENTRIES)
    k.ioctl(fd, k.KVM_GET_SUPPORTED_CPUID, cpuid)
    return cpuid


def phys_bits(cpuid: k.Cpuid2) -> int:
    for i in range(cpuid.nent):
        if cpuid.entries[i].function == 0x80000008:
            return cpuid.entries[i].eax & 0xFF
    return 36  # the architectural default without the leaf
