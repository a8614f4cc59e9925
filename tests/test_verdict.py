"""judge(): compares only what is asserted and observable, and says how it differs."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from conformance.load import load_file
from conformance.model import Decision, Kind, Level, Mapping, Observable, Observables, Observation, Root, WarnSite
from conformance.verdict import judge

REPO = Path(__file__).resolve().parent.parent
VECTOR = next(v for v in load_file(REPO / "suites" / "call" / "unmap-gfn-range-mainline.toml").vectors
              if v.id.endswith("tdx-filter-shared-zaps-direct-alias-only"))
EXPECTED = VECTOR.steps[0].expect
EVERYTHING = frozenset(Observable)


def observed(**changes: object) -> Observation:
    return Observation(steps=(replace(EXPECTED, **changes),))


def test_identical_observation_passes() -> None:
    verdict = judge(VECTOR, observed(), EVERYTHING)
    assert verdict.passed and verdict.diffs == () and verdict.ignored == ()


def test_mapping_difference_lists_both_directions() -> None:
    extra = Mapping(0, Root.DIRECT, 0x8000000200, Level.L2M, Kind.SHARED)
    gone = Mapping(0, Root.MIRROR, 0x250, Level.L4K, Kind.PRIVATE)
    verdict = judge(VECTOR, observed(mappings=EXPECTED.mappings - {gone} | {extra}), EVERYTHING)
    assert not verdict.passed
    assert verdict.diffs == (
        "step 1 (unmap_gfn_range, line 29): mappings differ (- expected but absent, + present but not expected)",
        "    - as0 mirror gfn=0x250 4K private",
        "    + as0 direct gfn=0x8000000200 2M shared",
    )


def test_scalar_differences_are_named() -> None:
    verdict = judge(VECTOR, observed(flush=False, decision=Decision.BOTH,
                                     warns=frozenset({WarnSite.TDP_MMU_ROOT_MATCH})), EVERYTHING)
    assert [d.split(": ", 1)[1] for d in verdict.diffs] == [
        "flush: expected true, observed false",
        "decision: expected shared, observed both",
        "warns: expected [], observed [tdp_mmu_root_match]",
    ]


def test_unobservable_expectation_is_ignored_not_failed() -> None:
    verdict = judge(VECTOR, observed(decision=Decision.NONE), EVERYTHING - {Observable.DECISION})
    assert verdict.passed
    assert verdict.ignored == ("step 1 (unmap_gfn_range, line 29): decision (not declared observable by the backend)",)


def test_a_withheld_observable_is_ignored_in_its_step_only() -> None:
    seen = Observation(steps=(Observables(mappings=EXPECTED.mappings, decision=EXPECTED.decision,
                                          warns=EXPECTED.warns, withheld=(("flush", "counter unreadable"),)),))
    verdict = judge(VECTOR, seen, EVERYTHING)
    assert verdict.passed
    assert verdict.ignored == ("step 1 (unmap_gfn_range, line 29): flush (counter unreadable)",)


def test_a_note_does_not_excuse_a_missing_observable() -> None:
    seen = Observation(steps=(Observables(mappings=EXPECTED.mappings),), notes=("flush counter unreadable",))
    verdict = judge(VECTOR, seen, EVERYTHING)
    assert not verdict.passed and not verdict.ignored and len(verdict.diffs) == 3


def test_an_unexplained_none_for_a_declared_observable_fails() -> None:
    verdict = judge(VECTOR, Observation(steps=(Observables(mappings=EXPECTED.mappings),)), EVERYTHING)
    assert not verdict.passed and not verdict.ignored
    assert len(verdict.diffs) == 3 and all("declares it observable but reported nothing" in d for d in verdict.diffs)


def test_wrong_number_of_steps_fails() -> None:
    verdict = judge(VECTOR, Observation(steps=()), EVERYTHING)
    assert not verdict.passed
    assert verdict.diffs == ("backend returned 0 step observations for 1 steps",)


def test_expected_leaves_that_stay_are_the_initial_states_own_objects() -> None:
    """So a backend that returns the state's objects is judged by identity (build.share_initial_leaves)."""
    from conformance.load import load_all

    shared = 0
    for vector in load_all([REPO / "suites"]).vectors:
        initial = {leaf: leaf for leaf in vector.state.mappings}
        for step in vector.steps:
            for leaf in step.expect.mappings or ():
                if leaf in initial:
                    assert leaf is initial[leaf], f"{vector.id}: {leaf.describe()} is a copy"
                    shared += 1
    assert shared > 1000  # most steps keep some of the initial leaves
