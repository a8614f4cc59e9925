"""Registers the reference MMU as backend `reference` (entry point)."""
from __future__ import annotations

from conformance import capabilities
from conformance.contract import BackendInfo
from conformance.hookspecs import hookimpl
from conformance.model import Layer, Observable, Observables, Observation, Profile, Vector, VmType, op_layer

from . import __version__, mainline, tdx_v10
from .mmu import Mmu

RULES = {Profile.MAINLINE: mainline.HANDLERS, Profile.TDX_V10: tdx_v10.HANDLERS}


class ReferenceBackend:
    info = BackendInfo(
        name="reference",
        version=__version__,
        profiles=frozenset(Profile),
        layers=frozenset(Layer),
        vm_types=frozenset(VmType),
        observables=frozenset(Observable),
        capabilities=capabilities.everything(),
        details={"implementation": "pure Python, one function per spec rule"},
    )

    def run(self, vector: Vector, profile: Profile) -> Observation:
        handlers = RULES[profile]
        mmu = Mmu(vector.state)
        steps = []
        for step in vector.steps:
            flushes_before = mmu.remote_flushes
            mmu.warns = set()
            outcome = handlers[type(step.op)](mmu, step.op)
            flushed = mmu.remote_flushes > flushes_before
            call = op_layer(step.op) is Layer.CALL
            steps.append(Observables(
                mappings=mmu.mappings(),
                flush=outcome.flush if outcome.flush is not None else flushed,
                decision=outcome.decision if call else None,
                warns=frozenset(mmu.warns) if call else None,
                errno=None if call else outcome.errno,
            ))
        return Observation(steps=tuple(steps))


@hookimpl
def conformance_backend() -> ReferenceBackend:
    return ReferenceBackend()
