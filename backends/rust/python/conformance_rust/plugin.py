"""Registers the Rust model as backend `rust` (entry point)."""
from __future__ import annotations

from conformance import capabilities
from conformance.contract import BackendInfo
from conformance.hookspecs import hookimpl
from conformance.model import Layer, Observable, Observables, Observation, Profile, Vector, VmType

from . import _mmu
from .encode import PROFILES, decision_from, host_huge_args, mapping_from, state_args, steps_args, warns_from


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

    def encode_steps(self, vector: Vector) -> list[tuple[int, tuple[int, ...]]]:
        return steps_args(step.op for step in vector.steps)

    def run(self, vector: Vector, profile: Profile) -> Observation:
        # One call into Rust per vector; a panic comes back as _mmu.RustPanic.
        results = _mmu.run(PROFILES[profile], *state_args(vector.state), self.encode_steps(vector),
                           host_huge=host_huge_args(vector.state))
        return Observation(steps=tuple(
            Observables(mappings=frozenset(map(mapping_from, mappings)), flush=flush,
                        decision=decision_from(decision), warns=warns_from(warns), errno=errno)
            for mappings, flush, decision, warns, errno in results))


@hookimpl
def conformance_backend() -> RustBackend:
    return RustBackend()
