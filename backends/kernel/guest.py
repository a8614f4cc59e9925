"""The guest: 64-bit user-mode (CPL3) code that touches a run of pages.

On PVM only 64-bit CPL3 code runs natively and goes through real SPTEs;
real mode and CPL0 are emulated and create none (live-kernel.md §0). So the
vCPU starts straight in long mode at CPL3, with 4 KiB guest page tables the
host builds in the system slot.

One KVM_RUN is one pass: the guest reads {start VA, count, mode} from its
control page, reads (mode 0) or writes (mode 1) one word in each of `count`
consecutive 4 KiB pages, then writes to an address without a memslot (an
MMIO exit: "done") and loops back to read the control page again. Nothing
in it can fault architecturally: every VA it touches is mapped by the page
tables below, so there is no exception path.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Union

PAGE = 4096
HUGE = 512 * PAGE
PTES_PER_PAGE = 512
MAX_DATA_PT = 64  # data page tables: 4K leaves at most 64 * 512
MAX_HUGE = 510 - MAX_DATA_PT  # PD entries left for 2M leaves
GIANT = 512 * HUGE
MAX_GIANT = 4  # PDPT[1..4]: one 1 GiB guest page each

# System slot layout, in pages from its base GPA.
PML4, PDPT, PD, SYS_PT, CODE, CTRL = range(6)
DATA_PT0 = 6

# Guest virtual layout: everything under PML4[0]/PDPT[0]/PD (VA < 1 GiB).
CODE_VA = 0x1000
CTRL_VA = 0x2000
MMIO_VA = 0x3000
SYS_ALIAS_VA = 0x100000  # every system page again, read by the system pass
DATA_VA = HUGE  # PD[1..]: one guest page table per 512 4K data pages, never shared with the system PT

PTE_P, PTE_RW, PTE_US, PTE_PS = 1, 2, 4, 1 << 7
PTE_A, PTE_D = 1 << 5, 1 << 6
TABLE = PTE_P | PTE_RW | PTE_US
LEAF = PTE_P | PTE_RW | PTE_US  # A/D clear: the walker sets them

MODE_READ, MODE_WRITE = 0, 1


def data_tables(small: int) -> int:
    return -(-small // PTES_PER_PAGE)


def va_4k(i: int) -> int:
    """Guest VA of the i-th 4K data page."""
    return DATA_VA + i * PAGE


def va_2m(small: int, j: int) -> int:
    """Guest VA of the j-th 2M data page: the PD entries after the data page tables."""
    return (1 + data_tables(small) + j) * HUGE


def va_1g(j: int) -> int:
    """Guest VA of the j-th 1G data page: a PS=1 PDPT entry above the first GiB
    (the shadow MMU maps a 1G SPTE only under a 1G guest page)."""
    return (1 + j) * GIANT


@dataclass(frozen=True)
class Jump:
    opcode: int  # short jump: rel8 follows
    label: str


Item = Union[bytes, str, Jump]  # code bytes, a label, or a short jump to a label


def assemble(items: list[Item]) -> bytes:
    """Two passes: place labels, then resolve rel8 jumps."""
    labels: dict[str, int] = {}
    pc = 0
    for item in items:
        if isinstance(item, str):
            labels[item] = pc
        else:
            pc += 2 if isinstance(item, Jump) else len(item)
    out = bytearray()
    for item in items:
        if isinstance(item, Jump):
            rel = labels[item.label] - (len(out) + 2)
            assert -128 <= rel < 128
            out += bytes((item.opcode, rel & 0xFF))
        elif isinstance(item, bytes):
            out += item
    return bytes(out)


@lru_cache(maxsize=1)
def code() -> bytes:
    """The touch loop, hand-assembled (REX.W forms; ModRM noted); the same
    bytes for every VM, so assembled once per process."""
    return assemble([
        "top",
        b"\x48\xbb" + struct.pack("<Q", CTRL_VA),  # mov rbx, CTRL_VA
        b"\x48\x8b\x33",                           # mov rsi, [rbx]      start VA   (modrm 00 110 011)
        b"\x48\x8b\x4b\x08",                       # mov rcx, [rbx+8]    count      (01 001 011)
        b"\x48\x8b\x53\x10",                       # mov rdx, [rbx+16]   mode       (01 010 011)
        b"\x48\x85\xc9",                           # test rcx, rcx
        Jump(0x74, "done"),                        # jz done: an empty pass only signals
        "loop",
        b"\x48\x85\xd2",                           # test rdx, rdx
        Jump(0x75, "write"),                       # jnz write
        b"\x48\x8b\x06",                           # mov rax, [rsi]      read       (00 000 110)
        Jump(0xEB, "next"),                        # jmp next
        "write",
        b"\x48\x89\x16",                           # mov [rsi], rdx      write      (00 010 110)
        "next",
        b"\x48\x81\xc6" + struct.pack("<I", PAGE),  # add rsi, 4096                 (11 000 110)
        b"\x48\xff\xc9",                           # dec rcx                        (11 001 001)
        Jump(0x75, "loop"),                        # jnz loop
        "done",
        b"\x48\xbf" + struct.pack("<Q", MMIO_VA),  # mov rdi, MMIO_VA
        b"\x89\x07",                               # mov [rdi], eax: no memslot -> KVM_EXIT_MMIO
        Jump(0xEB, "top"),                         # next pass
    ])


def sys_pages(small: int) -> int:
    """Size of the system slot for a guest with `small` 4K data pages."""
    return DATA_PT0 + max(1, data_tables(small))


def build_system(mem: memoryview, sys_gpa: int, mmio_gpa: int, small: list[int], huge: list[int],
                 giant: list[int]) -> None:
    """Write page tables, code and control page into the system slot's memory.

    4K data page i is mapped at va_4k(i) -> small[i] and 2M data page j at
    va_2m(j) -> huge[j] (a PS=1 PDE), each once: one VA per GFN, so one SPTE
    per leaf (pages_4k counts SPTEs, not GFNs); 1G data page k at va_1g(k).
    """
    def gpa(page: int) -> int:
        return sys_gpa + page * PAGE

    def put(page: int, index: int, value: int) -> None:
        struct.pack_into("<Q", mem, page * PAGE + index * 8, value)

    put(PML4, 0, gpa(PDPT) | TABLE)
    put(PDPT, 0, gpa(PD) | TABLE)
    put(PD, 0, gpa(SYS_PT) | TABLE)
    put(SYS_PT, CODE_VA // PAGE, gpa(CODE) | LEAF)
    put(SYS_PT, CTRL_VA // PAGE, gpa(CTRL) | LEAF)
    put(SYS_PT, MMIO_VA // PAGE, mmio_gpa | LEAF)
    for page in range(sys_pages(len(small))):
        put(SYS_PT, SYS_ALIAS_VA // PAGE + page, gpa(page) | LEAF)
    for table in range(data_tables(len(small))):
        put(PD, DATA_VA // HUGE + table, gpa(DATA_PT0 + table) | TABLE)
    write_data_ptes(mem, small, huge, giant)
    blob = code()
    mem[CODE * PAGE:CODE * PAGE + len(blob)] = blob


def write_data_ptes(mem: memoryview, small: list[int], huge: list[int], giant: list[int]) -> None:
    """(Re)write every data PTE, 2M PDE and 1G PDPTE with A/D clear.

    Clearing A before a re-touch stops the shadow MMU's PTE prefetch from
    mapping neighbours of a faulting page (it only prefetches gPTEs with
    A=1), so one fault means exactly one SPTE (live-kernel.md §3b).
    """
    for i, data_gpa in enumerate(small):
        struct.pack_into("<Q", mem, DATA_PT0 * PAGE + i * 8, data_gpa | LEAF)
    for j, data_gpa in enumerate(huge):
        struct.pack_into("<Q", mem, PD * PAGE + va_2m(len(small), j) // HUGE * 8, data_gpa | LEAF | PTE_PS)
    for j, data_gpa in enumerate(giant):
        struct.pack_into("<Q", mem, PDPT * PAGE + va_1g(j) // GIANT * 8, data_gpa | LEAF | PTE_PS)


def leaf_entry(level_pages: int, va: int) -> int:
    """Byte offset in the system slot of the guest entry that maps the data
    leaf at `va`: its PTE (4K, the data page tables are consecutive), its
    PS=1 PDE (2M) or its PS=1 PDPTE (1G)."""
    if level_pages == 1:
        return DATA_PT0 * PAGE + (va - DATA_VA) // PAGE * 8
    if level_pages == PTES_PER_PAGE:
        return PD * PAGE + va // HUGE * 8
    return PDPT * PAGE + va // GIANT * 8


def accessed(mem: memoryview, level_pages: int, va: int) -> bool:
    """The Accessed bit (bit 5: the entry's lowest byte) of the guest entry
    mapping the data leaf of `level_pages` 4K pages at `va`."""
    return bool(mem[leaf_entry(level_pages, va)] & PTE_A)


def set_pass(mem: memoryview, va: int, count: int, mode: int) -> None:
    """Program the next pass: `count` pages from guest VA `va`, 4 KiB apart."""
    struct.pack_into("<QQQ", mem, CTRL * PAGE, va, count, mode)
