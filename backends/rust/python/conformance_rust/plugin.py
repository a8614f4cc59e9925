"""Registers the Rust model as backend `rust` (entry point).

What crosses into Rust: a vector's state once (the crate reads the
`Mapping` objects of `state.mappings` itself and keeps them, with the
model built from them, in a `Prepared`; the last few are cached per
`State` object, so a vector run under both profiles is read once) and each
run's steps as small tuples. What comes back: per step, the outcomes and
the change to the mapping set, as lists of `Mapping` objects (those of the
state, or new ones for leaves the run made). Each step's frozenset is the
one before it less the leaves gone plus the leaves new, or built afresh
when fewer leaves are left than changed; the first step starts from the
vector's own `state.mappings`, and a step that changes nothing reuses the
set before it. So a step that zaps 16 leaves of a million hashes 16
`Mapping`s, not a million.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from typing import Any

from conformance import capabilities
from conformance.contract import BackendInfo
from conformance.hookspecs import hookimpl
from conformance.model import (
    Kind,
    Layer,
    Level,
    Mapping,
    Observable,
    Observables,
    Observation,
    Profile,
    State,
    Vector,
    VmType,
)

from . import _mmu
from .encode import (
    KINDS,
    PROFILES,
    ROOTS,
    decision_from,
    host_huge_args,
    slot_tuple,
    steps_args,
    vm_tuple,
    warns_from,
)

WORDS = _mmu.Vocabulary(Mapping, list(ROOTS), list(KINDS), sorted(Level))
assert [k.value for k in KINDS] == [Kind.SHARED.value, Kind.PRIVATE.value]
SAME, DIFF, FULL = 0, 1, 2  # how a step's mappings follow from the step before (Prepared.run)


def prepare(state: State) -> Any:
    """The state read into the crate: its model built, its Mapping objects held."""
    return _mmu.Prepared(WORDS, vm_tuple(state.vm), [slot_tuple(s) for s in state.slots],
                         list(state.private_ranges), state.mappings, host_huge_args(state))


class PreparedStates:
    """The last few states prepared, by State object (checked through a weak
    reference, so a recycled id never matches): a vector's profiles run one
    after the other, and the second finds the state read."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.entries: OrderedDict[int, tuple[weakref.ref[State], Any]] = OrderedDict()

    def get(self, state: State) -> Any:
        entry = self.entries.get(id(state))
        if entry is not None and entry[0]() is state:
            self.entries.move_to_end(id(state))
            return entry[1]
        prepared = prepare(state)
        try:
            self.entries[id(state)] = (weakref.ref(state), prepared)
        except TypeError:  # not weakly referenceable: not cached
            return prepared
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return prepared


def advance(before: frozenset[Mapping], delta: int, first: list[Mapping], second: list[Mapping]) -> frozenset[Mapping]:
    """A step's mappings from the step before's, as Prepared.run describes them."""
    if delta == SAME:
        return before
    if delta == FULL:
        return frozenset(first)
    after = before.difference(first) if first else before
    return after.union(second) if second else after


class RustBackend:
    info = BackendInfo(
        name="rust",
        version=_mmu.__version__,
        profiles=frozenset(Profile),
        layers=frozenset(Layer),
        vm_types=frozenset(VmType),
        observables=frozenset(Observable),
        capabilities=capabilities.everything(),
        details={"implementation": "Rust (PyO3): 5-level radix page tables of 512 entries per root"},
    )

    def __init__(self) -> None:
        self.states = PreparedStates()

    def encode_steps(self, vector: Vector) -> list[tuple[int, tuple[int, ...]]]:
        return steps_args(step.op for step in vector.steps)

    def run(self, vector: Vector, profile: Profile) -> Observation:
        # One call into Rust per vector (and one per new state); a panic
        # comes back as _mmu.RustPanic.
        results = self.states.get(vector.state).run(PROFILES[profile], self.encode_steps(vector))
        mappings = vector.state.mappings
        if type(mappings) is not frozenset:
            mappings = frozenset(mappings)
        steps = []
        for flush, decision, warns, errno, delta, first, second in results:
            mappings = advance(mappings, delta, first, second)
            steps.append(Observables(mappings=mappings, flush=flush, decision=decision_from(decision),
                                     warns=warns_from(warns), errno=errno))
        return Observation(steps=tuple(steps))


@hookimpl
def conformance_backend() -> RustBackend:
    return RustBackend()
