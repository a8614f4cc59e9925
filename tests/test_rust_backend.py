"""The `rust` backend: panics stay one item's error, and on random vectors
within the spec's domain it agrees with the reference on every observable.

Skipped when the backend is not installed (`pip install ./backends/rust`)."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conformance.model import (
    MEM_GUEST_MEMFD, MEM_LOG_DIRTY_PAGES, MEM_READONLY, MEMORY_ATTRIBUTE_PRIVATE, PAGE_SIZE, PROTECTED_STATE_VMS,
    V10_ATTR_PRIVATE, V10_ATTR_SHARED, AttrFilter, DisableQuirk, GmemFlag, GmemPunchHole, Kind, Level, Mapping,
    MemoryTypeChange, MemslotDelete, MemslotMove, MemslotSetFlags, MmRelease,
    MmuNotifierInvalidate, Observables, Operation, Profile, Quirk, RangeFlag, Root, SetMemoryAttributes, Slot,
    State, Step, UnmapGfnRange, Vector, Vm, VmDestroy, VmType, VM_TYPES, ZapAll, ZapAllFast, ZapGfnRange,
    ZapMemslot,
)
from conformance_reference.plugin import ReferenceBackend

_mmu = pytest.importorskip("conformance_rust._mmu", reason="the rust backend is not installed")
from conformance_rust.encode import DEBUG_PANIC, PROFILES  # noqa: E402
from conformance_rust.plugin import RustBackend  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- panics

def test_panic_is_a_runtime_error_with_its_message() -> None:
    vm = (0, True, False, 52, True)
    with pytest.raises(RuntimeError, match="rust panic: debug panic requested") as info:
        _mmu.run(PROFILES[Profile.MAINLINE], vm, [], [], [], [(DEBUG_PANIC, ())])
    assert isinstance(info.value, _mmu.RustPanic)


VECTOR = textwrap.dedent('''\
    [suite]
    format = 1
    description = "scratch suite"

    [[vector]]
    id = "fast-zap"
    description = "Fast zap on TDX keeps the mirror"
    profiles = ["tdx-v10", "mainline"]
    flags = ["basic"]

    [vector.vm]
    type = "TDX"
    tdp_mmu = true

    [[vector.slot]]
    id = 1
    base_gfn = 0x200
    npages = 0x200
    flags = ["PRIVATE"]

    [vector.initial]
    mappings = [
      { root = "direct", gfn = 0x8000000200, level = "2M" },
      { root = "mirror", gfn = 0x210, level = "4K" },
    ]

    [[vector.step]]
    op = "zap_all_fast"

    [vector.step.expect]
    mappings = [{ root = "mirror", gfn = 0x210, level = "4K" }]
    flush = false
    decision = "shared"
    warns = []
    ''')

FLAGS = textwrap.dedent('''\
    [flags.basic]
    description = "plain behaviour"
    bug_class = "basic"
    kernel = ["kvm_mmu_zap_all_fast"]
    ''')

PANICKY = textwrap.dedent('''\
    from dataclasses import replace
    from conformance.hookspecs import hookimpl
    from conformance_rust.encode import DEBUG_PANIC
    from conformance_rust.plugin import RustBackend

    class Panicky(RustBackend):
        """The real rust backend, with a panicking step slipped in first."""
        info = replace(RustBackend.info, name="panicky")

        def encode_steps(self, vector):
            return [(DEBUG_PANIC, ())] + super().encode_steps(vector)

    @hookimpl
    def conformance_backend():
        return Panicky()
    ''')


def test_panic_fails_only_its_item_and_the_session_continues(tmp_path: Path) -> None:
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "flags.toml").write_text(FLAGS)
    (tmp_path / "suites" / "scratch.toml").write_text(VECTOR)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    site = tmp_path / "site"
    dist = site / "panicky-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "panicky_backend.py").write_text(PANICKY)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: panicky\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kvm_mmu_conformance.backends]\npanicky = panicky_backend\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "suites",
                          "--backend", "panicky", "--backend", "rust"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "backend panicky raised RustPanic: rust panic: debug panic requested by the adapter" in out.stdout
    assert "PASSED suites/scratch.toml::fast-zap[rust:mainline]" in out.stdout
    assert "PASSED suites/scratch.toml::fast-zap[rust:tdx-v10]" in out.stdout
    assert "2 failed, 2 passed" in out.stdout


# ---------------------------------------------------------------- differential

class Generator:
    """Random vectors inside the loader's rules (docs/vectors.md), so that a
    disagreement is about semantics, not about malformed input."""

    def __init__(self, rng: random.Random, profile: Profile) -> None:
        self.rng, self.profile = rng, profile

    def vm(self) -> Vm:
        r = self.rng
        vm_type = r.choice(sorted(VM_TYPES[self.profile], key=lambda t: t.value))
        tdp_only = vm_type in (VmType.TDX, VmType.SW_PROTECTED)
        tdp_mmu = tdp_only or r.random() < 0.7
        rmaps = vm_type is not VmType.TDX and (not tdp_mmu or r.random() < 0.3)
        slot_zap_all = self.profile is Profile.TDX_V10 or r.random() < 0.6
        return Vm(vm_type, tdp_mmu, rmaps, r.choice((48, 52)), slot_zap_all)

    def slots(self, vm: Vm) -> list[Slot]:
        r, slots = self.rng, []
        for as_id in range(vm.address_spaces):
            base = r.choice((0, 0x200, 0x40000))
            for _ in range(r.randint(1, 3)):
                npages = r.choice((0x10, 0x200, 0x600, 0x40000, 0x80000))
                private = (vm.private_mem or vm.type is VmType.DEFAULT) and r.random() < 0.6
                flags: set[GmemFlag] = set()
                if private and r.random() < 0.3:
                    flags.add(GmemFlag.MMAP)
                if private and not vm.private_mem and r.random() < 0.5:
                    flags.add(GmemFlag.INIT_SHARED)
                log_dirty = not private and r.random() < 0.3
                readonly = not private and vm.type not in PROTECTED_STATE_VMS and r.random() < 0.15
                slots.append(Slot(len(slots) + 1, base, npages, as_id, private, log_dirty, readonly,
                                  gmem_flags=frozenset(flags)))
                base += npages + r.choice((0, 0x200, 0x1000))
        return slots

    def roots(self, vm: Vm) -> list[tuple[Root, bool]]:
        roots: list[tuple[Root, bool]] = []
        if vm.tdp_mmu:
            roots += [(Root.DIRECT, False), (Root.DIRECT, True)]
            if vm.mirror:
                roots += [(Root.MIRROR, False)] + ([(Root.MIRROR, True)] if self.profile is Profile.MAINLINE else [])
        return roots + ([(Root.SHADOW, False)] if vm.rmaps else [])

    def mappings(self, vm: Vm, slots: list[Slot]) -> frozenset[Mapping]:
        r, taken, out = self.rng, {}, set()
        roots = self.roots(vm)
        for _ in range(r.randint(0, 24)):
            slot = r.choice(slots)
            root, invalid = r.choice(roots)
            levels = [Level.L4K] if root is Root.MIRROR else list(Level)
            level = r.choice(levels)
            first = -(-slot.base_gfn // level.pages) * level.pages
            count = (slot.end_gfn - first) // level.pages
            if count <= 0:
                continue
            gfn = first + r.randrange(min(count, 64)) * level.pages
            tree = taken.setdefault((slot.as_id, root, invalid), [])
            if any(lo < gfn + level.pages and gfn < hi for lo, hi in tree):
                continue
            tree.append((gfn, gfn + level.pages))
            kind = (Kind.PRIVATE if root is Root.MIRROR else Kind.SHARED if vm.mirror and root is Root.DIRECT
                    else r.choice((Kind.SHARED, Kind.PRIVATE)) if vm.private_mem else Kind.SHARED)
            alias = vm.shared_bit if root is Root.DIRECT else 0
            out.add(Mapping(slot.as_id, root, gfn | alias, level, kind, invalid))
        return frozenset(out)

    def host_huge(self, slots: list[Slot]) -> tuple[tuple[int, int, Level], ...]:
        """Some 2M host pages in the first blocks of as_id-0 slots, a 1G one where a slot holds it."""
        r, pages = self.rng, []
        for slot in (s for s in slots if s.as_id == 0):
            for level in (Level.L1G, Level.L2M):
                first = -(-slot.base_gfn // level.pages) * level.pages
                for page in range(first, min(first + 4 * level.pages, slot.end_gfn - level.pages + 1), level.pages):
                    if r.random() < 0.4 and not any(lo < page + level.pages and page < hi for lo, hi, _ in pages):
                        pages.append((page, page + level.pages, level))
        return tuple(sorted(pages))

    def span(self, slot: Slot) -> tuple[int, int]:
        r = self.rng
        # Mappings sit in the first 64 leaves of a slot; so do most ranges.
        start = slot.base_gfn + r.randrange(min(slot.npages, r.choice((0x40, 0x800))))
        return start, min(slot.end_gfn, start + r.choice((1, 0x10, 0x200, 0x40000)))

    def op(self, vm: Vm, slots: dict[int, Slot]) -> Operation:
        r, v10 = self.rng, self.profile is Profile.TDX_V10
        choices = ["zap_gfn_range", "zap_all_fast", "zap_all", "notifier", "attrs", "mtype", "mm_release",
                   "vm_destroy"] + (["unmap"] * 4 + ["zap_memslot", "delete", "move"] if slots else [])
        if any(s.private for s in slots.values()):
            choices += ["punch"] * 2
        choices += [] if v10 else ["quirk"]
        small = sorted((s for s in slots.values() if s.npages < 0x40000), key=lambda s: s.id)  # no 1G split
        choices += ["flags"] * 3 if small and not v10 else []
        kind = r.choice(choices)
        slot = r.choice(sorted(slots.values(), key=lambda s: s.id)) if slots else None
        lo, hi = r.choice(((0, 0x1000), (0x3ff, 0x401), (0, 1 << 40), (0x40000, 0xc0000)))
        if slot and r.random() < 0.6:
            lo, hi = self.span(slot)
        if kind == "unmap":
            start, end = self.span(slot)
            flags = frozenset(f for f in RangeFlag if v10 and r.random() < 0.4)
            attr = (r.choice((V10_ATTR_SHARED, V10_ATTR_PRIVATE, 0, 7, None)) if v10 else None)
            if RangeFlag.SET_MEM_ATTR in flags and attr is None:
                attr = V10_ATTR_SHARED
            filters = frozenset(f for f in AttrFilter if not v10 and r.random() < 0.6)
            return UnmapGfnRange(slot.id, start, end, r.random() < 0.2, flags, attr, filters)
        if kind == "flags":
            slot = r.choice(small)
            bits = slot.flag_bits ^ MEM_LOG_DIRTY_PAGES if r.random() < 0.7 else r.choice(
                (slot.flag_bits, MEM_READONLY, MEM_GUEST_MEMFD | MEM_LOG_DIRTY_PAGES, 0, 8))
            return MemslotSetFlags(slot.id, bits)
        if kind == "punch":
            slot = r.choice(sorted((s for s in slots.values() if s.private), key=lambda s: s.id))
            return GmemPunchHole(slot.id, *self.span(slot))
        if kind == "attrs":
            address, size = lo * PAGE_SIZE, (hi - lo) * PAGE_SIZE
            if r.random() < 0.1:
                address += r.choice((1, 0)) if r.random() < 0.5 else 0
                size = r.choice((0, size + 8, size))
            attributes = r.choice((0, MEMORY_ATTRIBUTE_PRIVATE)) if v10 else r.choice(
                (0, MEMORY_ATTRIBUTE_PRIVATE, MEMORY_ATTRIBUTE_PRIVATE, 1))
            flags = 0 if v10 or r.random() < 0.9 else 1
            return SetMemoryAttributes(address, size, attributes, flags)
        if kind == "move":
            return MemslotMove(slot.id, r.choice((0, 0x200, 0x1000, 0x100000, vm.shared_bit or 0x200000)))
        simple = {
            "zap_gfn_range": lambda: ZapGfnRange(*((hi, lo) if r.random() < 0.1 else (lo, hi))),
            "zap_memslot": lambda: ZapMemslot(slot.id), "zap_all_fast": ZapAllFast, "zap_all": ZapAll,
            "notifier": lambda: MmuNotifierInvalidate(r.randrange(vm.address_spaces), lo, hi),
            "mtype": lambda: MemoryTypeChange(lo, hi), "mm_release": MmRelease, "vm_destroy": VmDestroy,
            "delete": lambda: MemslotDelete(slot.id), "quirk": lambda: DisableQuirk(Quirk.SLOT_ZAP_ALL),
        }
        return simple[kind]()

    def vector(self, index: int) -> Vector:
        vm = self.vm()
        slots = self.slots(vm)
        live = {s.id: s for s in slots}
        steps = []
        for _ in range(self.rng.randint(1, 5)):
            op = self.op(vm, live)
            if isinstance(op, (MemslotDelete, MemslotMove)):
                live.pop(op.slot)  # a moved slot's later ranges would need its new base
            steps.append(Step(op, Observables()))
        private = tuple(self.span(self.rng.choice(slots)) for _ in range(self.rng.randint(0, 3)))
        state = State(vm, tuple(slots), private, self.mappings(vm, slots), self.host_huge(slots))
        return Vector(f"random::{index}", "random", frozenset({self.profile}), frozenset(), (), state, tuple(steps))


@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_rust_agrees_with_the_reference_on_random_vectors(profile: Profile) -> None:
    rng = random.Random(f"rust-vs-reference-{profile.value}")
    generator, reference, rust = Generator(rng, profile), ReferenceBackend(), RustBackend()
    for index in range(400):
        vector = generator.vector(index)
        expected = reference.run(vector, profile)
        observed = rust.run(vector, profile)
        for number, (want, got) in enumerate(zip(expected.steps, observed.steps), 1):
            assert got == want, describe(vector, number, want, got)


def describe(vector: Vector, number: int, want: Observables, got: Observables) -> str:
    lines = [f"{vector.id} step {number}: {vector.steps[number - 1].op}", f"vm: {vector.state.vm}",
             f"slots: {vector.state.slots}", f"private: {vector.state.private_ranges}",
             "initial: " + "; ".join(m.describe() for m in sorted(vector.state.mappings))]
    lines += [f"steps: {[s.op for s in vector.steps]}"]
    for field in ("flush", "decision", "warns", "errno"):
        if getattr(want, field) != getattr(got, field):
            lines.append(f"{field}: reference {getattr(want, field)}, rust {getattr(got, field)}")
    if want.mappings != got.mappings:
        lines += [f"only reference: {m.describe()}" for m in sorted(want.mappings - got.mappings)]
        lines += [f"only rust: {m.describe()}" for m in sorted(got.mappings - want.mappings)]
    return "\n".join(lines)
