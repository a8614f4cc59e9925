"""Registers the posted v10 047 model as backend `tdx-v10-posted`.

It claims only the tdx-v10 profile and points the runner at its expectations
file, expected-failures.toml, which says exactly which items it must fail and
which review found each bug; the runner holds it to that list both ways.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from conformance import (
    BackendInfo,
    Layer,
    Observable,
    Observables,
    Observation,
    Profile,
    Vector,
    VmType,
    all_capabilities,
    hookimpl,
    op_layer,
)

from . import __version__, posted

EXPECTATIONS = Path(__file__).resolve().with_name("expected-failures.toml")


class PostedBackend:
    def __init__(self) -> None:
        self.info = BackendInfo(
            name="tdx-v10-posted", version=__version__, profiles=frozenset({Profile.TDX_V10}),
            layers=frozenset(Layer), vm_types=frozenset({VmType.DEFAULT, VmType.TDX}),
            observables=frozenset(Observable), capabilities=all_capabilities(),
            details={"model": "TDX v10 047 as posted, 2022-10-30, with its three review findings",
                     "expectations": str(EXPECTATIONS)},
            expectations=EXPECTATIONS,
        )

    def run(self, vector: Vector, profile: Profile) -> Observation:
        mmu = posted.PostedMmu(vector.state)
        steps = []
        for step in vector.steps:
            flushes_before = mmu.remote_flushes
            mmu.warns = set()
            outcome = posted.HANDLERS[type(step.op)](mmu, step.op)
            call = op_layer(step.op) is Layer.CALL
            seen = Observables(
                mappings=mmu.mappings(),
                flush=outcome.flush if outcome.flush is not None else mmu.remote_flushes > flushes_before,
                decision=outcome.decision if call else None,
                warns=frozenset(mmu.warns) if call else None,
                errno=None if call else outcome.errno,
            )
            if mmu.indeterminate:  # an uninitialised read decided the zap: no leaf or flush is known from here on
                why = "zap_private was read uninitialised: indeterminate"
                seen = replace(seen, mappings=None, flush=None, withheld=(("mappings", why), ("flush", why)))
            steps.append(seen)
        return Observation(steps=tuple(steps))


@hookimpl
def conformance_backend() -> PostedBackend:
    return PostedBackend()
