"""Compare an observation with a vector's expectations; never calls a backend."""

from __future__ import annotations

from dataclasses import dataclass

from .model import ERRNO_LABELS, Mapping, Observable, Observation, Vector, op_name


@dataclass(frozen=True)
class Verdict:
    passed: bool
    diffs: tuple[str, ...]  # readable expected-vs-observed lines
    ignored: tuple[str, ...]  # asserted observables this backend cannot see


def judge(vector: Vector, observation: Observation, observable: frozenset[Observable]) -> Verdict:
    """An expectation is ignored when the backend does not declare the
    observable, or withholds it in that step with a reason."""
    if len(observation.steps) != len(vector.steps):
        return Verdict(
            False, (f"backend returned {len(observation.steps)} step observations for {len(vector.steps)} steps",), ()
        )
    diffs: list[str] = []
    ignored: list[str] = []
    for number, (step, seen) in enumerate(zip(vector.steps, observation.steps), start=1):
        label = f"step {number} ({op_name(step.op)}, line {step.line})"
        for what in step.expect.asserted():
            got = getattr(seen, what.value)
            why = (
                "not declared observable by the backend"
                if what not in observable
                else (seen.withheld_reason(what) if got is None else None)
            )
            if why is not None:
                ignored.append(f"{label}: {what.value} ({why})")
                continue
            if got is None:  # a declared observable withheld without a word is a backend bug, not a pass
                diffs.append(
                    f"{label}: {what.value}: the backend declares it observable but reported nothing "
                    f"and gave no reason for this step"
                )
                continue
            diffs.extend(
                f"{label}: {line}" if i == 0 else line
                for i, line in enumerate(compare(what, getattr(step.expect, what.value), got))
            )
    return Verdict(not diffs, tuple(diffs), tuple(ignored))


def compare(what: Observable, expected: object, observed: object) -> list[str]:
    if expected == observed:
        return []
    if what is Observable.MAPPINGS and isinstance(expected, frozenset) and isinstance(observed, frozenset):
        return mapping_diff(expected, observed)
    return [f"{what.value}: expected {show(what, expected)}, observed {show(what, observed)}"]


def show(what: Observable, value: object) -> str:
    if what is Observable.ERRNO and isinstance(value, int):
        return ERRNO_LABELS.get(value, str(value))
    if what is Observable.WARNS and isinstance(value, frozenset):
        return "[" + ", ".join(sorted(w.value for w in value)) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return getattr(value, "value", str(value))


def mapping_diff(expected: frozenset[Mapping], observed: frozenset[Mapping]) -> list[str]:
    lines = ["mappings differ (- expected but absent, + present but not expected)"]
    lines += [f"    - {m.describe()}" for m in sorted(expected - observed)]
    lines += [f"    + {m.describe()}" for m in sorted(observed - expected)]
    return lines
