"""Registers the posted v10 047 model as backend `tdx-v10-posted`.

It claims only the tdx-v10 profile and declares, from expected-failures.toml,
exactly which items it must fail; the runner holds it to that list both ways.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from conformance import capabilities
from conformance.contract import BackendInfo, KnownFailure
from conformance.hookspecs import hookimpl
from conformance.model import Layer, Observable, Observables, Observation, Profile, Vector, VmType, op_layer

from . import __version__, posted

EXPECTATIONS = Path(__file__).with_name("expected-failures.toml")


def known_failures(path: Path = EXPECTATIONS) -> tuple[KnownFailure, ...]:
    """Each entry names its bug and the review that found it; all must be given."""
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    bugs = doc["bug"]
    failures = []
    for number, entry in enumerate(doc["expected_failure"]):
        missing = {"pattern", "bug", "why"} - set(entry)
        if missing or entry["bug"] not in bugs:
            raise ValueError(f"{path}: expected_failure[{number}]: needs pattern, bug (one of {', '.join(bugs)}) "
                             f"and why; missing {', '.join(sorted(missing)) or 'a known bug'}")
        bug = bugs[entry["bug"]]
        failures.append(KnownFailure(entry["pattern"], f"bug {entry['bug']} ({bug['review']}): {entry['why']}"))
    return tuple(failures)


class PostedBackend:
    def __init__(self) -> None:
        self.info = BackendInfo(
            name="tdx-v10-posted", version=__version__, profiles=frozenset({Profile.TDX_V10}),
            layers=frozenset(Layer), vm_types=frozenset({VmType.DEFAULT, VmType.TDX}),
            observables=frozenset(Observable), capabilities=capabilities.everything(),
            details={"model": "TDX v10 047 as posted, 2022-10-30, with its three review findings",
                     "expectations": str(EXPECTATIONS)},
            known_failures=known_failures(),
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
