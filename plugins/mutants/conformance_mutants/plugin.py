"""Offers the mutants to `python -m conformance kill-matrix` (hook conformance_mutants).

They are not ordinary backends: `pytest suites` never runs them.
"""
from __future__ import annotations

from dataclasses import replace

from conformance.contract import Backend
from conformance.hookspecs import hookimpl
from conformance.model import Observation, Profile, Vector

from . import __version__
from .catalogue import MUTANTS, Mutant
from .variants import load_variant


class MutantBackend:
    """The reference backend compiled with one mutant's edits."""

    def __init__(self, mutant: Mutant) -> None:
        plugin = load_variant(mutant.name.replace("-", "_"), mutant.edits)
        self.mutant = mutant
        self.inner = plugin.ReferenceBackend()
        self.info = replace(self.inner.info, name=f"mutant:{mutant.name}", version=__version__,
                            details={"rule": f"docs/spec.md section {mutant.rule}", "mistake": mutant.description})

    def run(self, vector: Vector, profile: Profile) -> Observation:
        return self.inner.run(vector, profile)


@hookimpl
def conformance_mutants() -> list[Backend]:
    return [MutantBackend(m) for m in MUTANTS]
