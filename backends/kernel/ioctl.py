"""The KVM ioctls, structures and constants this backend uses, and nothing more.

Numbers are from include/uapi/linux/kvm.h (x86-64); ioctls go through libc
directly so an interrupted KVM_RUN returns EINTR instead of being retried.
"""
from __future__ import annotations

import ctypes
import os
from typing import Optional

# ioctl request numbers
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01
KVM_CHECK_EXTENSION = 0xAE03
KVM_GET_VCPU_MMAP_SIZE = 0xAE04
KVM_GET_SUPPORTED_CPUID = 0xC008AE05
KVM_CREATE_VCPU = 0xAE41
KVM_SET_USER_MEMORY_REGION = 0x4020AE46
KVM_SET_USER_MEMORY_REGION2 = 0x40A0AE49
KVM_GET_VCPU_EVENTS = 0x8040AE9F
KVM_SET_VCPU_EVENTS = 0x4040AEA0
KVM_RUN = 0xAE80
KVM_SET_REGS = 0x4090AE82
KVM_GET_SREGS = 0x8138AE83
KVM_SET_SREGS = 0x4138AE84
KVM_SET_MSRS = 0x4008AE89
KVM_SET_CPUID2 = 0x4008AE90
KVM_ENABLE_CAP = 0x4068AEA3
KVM_GET_STATS_FD = 0xAECE
KVM_SET_MEMORY_ATTRIBUTES = 0x4020AED2
KVM_CREATE_GUEST_MEMFD = 0xC040AED4

# KVM_CHECK_EXTENSION capabilities
KVM_CAP_USER_MEMORY = 3
KVM_CAP_NR_MEMSLOTS = 10
KVM_CAP_READONLY_MEM = 81
KVM_CAP_MULTI_ADDRESS_SPACE = 118
KVM_CAP_X86_SMM = 117
KVM_CAP_BINARY_STATS_FD = 203
KVM_CAP_DISABLE_QUIRKS2 = 213
KVM_CAP_USER_MEMORY2 = 231
KVM_CAP_MEMORY_ATTRIBUTES = 233
KVM_CAP_GUEST_MEMFD = 234
KVM_CAP_VM_TYPES = 235
KVM_CAP_GUEST_MEMFD_FLAGS = 244  # KVM_CAP_GUEST_MEMFD_MMAP (243) before 6.18

KVM_API_VERSION = 12
KVM_X86_QUIRK_SLOT_ZAP_ALL = 1 << 7
KVM_MEM_LOG_DIRTY_PAGES = 1 << 0
KVM_MEM_READONLY = 1 << 1
KVM_MEM_GUEST_MEMFD = 1 << 2
GUEST_MEMFD_FLAG_MMAP = 1 << 0
GUEST_MEMFD_FLAG_INIT_SHARED = 1 << 1
KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3
KVM_VCPUEVENT_VALID_SMM = 1 << 3

KVM_EXIT_MMIO = 6
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_MEMORY_FAULT = 39
EXIT_NAMES = {0: "UNKNOWN", 2: "IO", 5: "HLT", 6: "MMIO", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR",
              17: "INTERNAL_ERROR", 39: "MEMORY_FAULT"}

# x86 MSRs written by the memory-type negative control
MSR_MTRR_PHYSBASE0 = 0x200
MSR_MTRR_PHYSMASK0 = 0x201
MSR_IA32_CR_PAT = 0x277
MSR_MTRR_DEF_TYPE = 0x2FF

MADV_DONTNEED = 4
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MAP_NORESERVE = 0x4000  # not exported by the mmap module
MAP_FIXED = 0x10
MAP_POPULATE = 0x8000
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_libc.ioctl.restype = ctypes.c_int
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long)

MAP_FAILED = ctypes.c_void_p(-1).value


def ioctl(fd: int, request: int, arg: "int | ctypes.Array | ctypes.Structure | None" = 0) -> int:
    """One ioctl; raises OSError(errno) on failure, never retries."""
    if arg is None or isinstance(arg, int):
        ptr: Optional[int] = arg
    else:
        ptr = ctypes.addressof(arg)
    ret = _libc.ioctl(fd, request, ptr)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ioctl {request:#x}: {os.strerror(err)}")
    return ret


def mmap(length: int, prot: int, flags: int, fd: int = -1, offset: int = 0, at: Optional[int] = None) -> int:
    """mmap(2) returning the address; the caller owns it (munmap)."""
    addr = _libc.mmap(at, length, prot, flags, fd, offset)
    if addr in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap: {os.strerror(err)}")
    return addr


def munmap(addr: int, length: int) -> None:
    if _libc.munmap(addr, length) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"munmap: {os.strerror(err)}")


def madvise(addr: int, length: int, advice: int) -> None:
    if _libc.madvise(addr, length, advice) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"madvise: {os.strerror(err)}")


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, mode, offset, length) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fallocate: {os.strerror(err)}")


# ---------------------------------------------------------------- structures

class UserspaceMemoryRegion2(ctypes.Structure):
    _fields_ = [("slot", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("guest_phys_addr", ctypes.c_uint64),
                ("memory_size", ctypes.c_uint64), ("userspace_addr", ctypes.c_uint64),
                ("guest_memfd_offset", ctypes.c_uint64), ("guest_memfd", ctypes.c_uint32),
                ("pad1", ctypes.c_uint32), ("pad2", ctypes.c_uint64 * 14)]


class Regs(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class Segment(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint32), ("selector", ctypes.c_uint16),
                ("type", ctypes.c_uint8), ("present", ctypes.c_uint8), ("dpl", ctypes.c_uint8),
                ("db", ctypes.c_uint8), ("s", ctypes.c_uint8), ("l", ctypes.c_uint8), ("g", ctypes.c_uint8),
                ("avl", ctypes.c_uint8), ("unusable", ctypes.c_uint8), ("padding", ctypes.c_uint8)]


class Dtable(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint16), ("padding", ctypes.c_uint16 * 3)]


class Sregs(ctypes.Structure):
    _fields_ = [("cs", Segment), ("ds", Segment), ("es", Segment), ("fs", Segment), ("gs", Segment),
                ("ss", Segment), ("tr", Segment), ("ldt", Segment), ("gdt", Dtable), ("idt", Dtable),
                ("cr0", ctypes.c_uint64), ("cr2", ctypes.c_uint64), ("cr3", ctypes.c_uint64),
                ("cr4", ctypes.c_uint64), ("cr8", ctypes.c_uint64), ("efer", ctypes.c_uint64),
                ("apic_base", ctypes.c_uint64), ("interrupt_bitmap", ctypes.c_uint64 * 4)]


class MsrEntry(ctypes.Structure):
    _fields_ = [("index", ctypes.c_uint32), ("reserved", ctypes.c_uint32), ("data", ctypes.c_uint64)]


class CpuidEntry2(ctypes.Structure):
    _fields_ = [("function", ctypes.c_uint32), ("index", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("eax", ctypes.c_uint32), ("ebx", ctypes.c_uint32), ("ecx", ctypes.c_uint32),
                ("edx", ctypes.c_uint32), ("padding", ctypes.c_uint32 * 3)]


class EnableCap(ctypes.Structure):
    _fields_ = [("cap", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("args", ctypes.c_uint64 * 4),
                ("pad", ctypes.c_uint8 * 64)]


class CreateGuestMemfd(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint64), ("flags", ctypes.c_uint64), ("reserved", ctypes.c_uint64 * 6)]


class VcpuEvents(ctypes.Structure):
    """struct kvm_vcpu_events (64 bytes); only flags and smi.smm are used."""
    _fields_ = [("exception", ctypes.c_uint8 * 8), ("interrupt", ctypes.c_uint8 * 4), ("nmi", ctypes.c_uint8 * 4),
                ("sipi_vector", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("smi_smm", ctypes.c_uint8),
                ("smi_rest", ctypes.c_uint8 * 3), ("tail", ctypes.c_uint8 * 36)]


class MemoryAttributes(ctypes.Structure):
    _fields_ = [("address", ctypes.c_uint64), ("size", ctypes.c_uint64),
                ("attributes", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


MAX_CPUID_ENTRIES = 256
MAX_MSR_ENTRIES = 8


class Cpuid2(ctypes.Structure):
    # Fixed capacity: one class for the process (a class per call leaks, see live-kernel.md §6).
    _fields_ = [("nent", ctypes.c_uint32), ("padding", ctypes.c_uint32),
                ("entries", CpuidEntry2 * MAX_CPUID_ENTRIES)]


class Msrs(ctypes.Structure):
    _fields_ = [("nmsrs", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("entries", MsrEntry * MAX_MSR_ENTRIES)]


# Offsets into the mmap'ed struct kvm_run
RUN_EXIT_REASON = 8
RUN_MMIO_PHYS_ADDR = 32
RUN_MMIO_LEN = 48
RUN_MMIO_IS_WRITE = 52
RUN_INTERNAL_SUBERROR = 32
RUN_MEMORY_FAULT_GPA = 40  # struct { u64 flags; u64 gpa; u64 size; } memory_fault at 32
