"""What a backend's run() returned, checked before any comparison, so that a
malformed observation is blamed on the backend with the field that is wrong
and never surfaces as a TypeError inside the verdict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .model import Decision, Mapping, Observable, Observables, Observation, Vector, WarnSite


def _frozenset_of(kind: type) -> Callable[[Any], bool]:
    # by the members' distinct types: `map(type, ...)` runs in C, so a million leaves cost
    # milliseconds, not a Python call each
    return lambda value: isinstance(value, frozenset) and all(issubclass(t, kind) for t in set(map(type, value)))


def _withheld(value: Any) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(v, tuple) and len(v) == 2 and v[0] in {o.value for o in Observable} and isinstance(v[1], str)
        for v in value
    )


# field -> (what it must be, check); None is always allowed for the observables
FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "mappings": ("frozenset of Mapping", _frozenset_of(Mapping)),
    "flush": ("bool", lambda v: isinstance(v, bool)),
    "decision": ("Decision", lambda v: isinstance(v, Decision)),
    "warns": ("frozenset of WarnSite", _frozenset_of(WarnSite)),
    "errno": ("int", lambda v: isinstance(v, int) and not isinstance(v, bool)),
}


# fields whose members are str enums: a plain string there gets the member to use
ENUM_FIELDS: dict[str, type[Decision] | type[WarnSite]] = {"decision": Decision, "warns": WarnSite}


def hint(name: str, value: Any) -> str:
    """For a plain string where a str enum member belongs: the member to use."""
    kind = ENUM_FIELDS.get(name)
    items = value if isinstance(value, (set, frozenset, tuple, list)) else [value]
    plain = sorted(item for item in items if type(item) is str)  # a member is a str too, but not of type str
    members = [m for text in plain for m in kind or () if m.value == text]
    return f"; use conformance.{type(members[0]).__name__}.{members[0].name}" if members else ""


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def problem(returned: Any, vector: Vector) -> str | None:
    """The first thing wrong with `returned` as an observation of `vector`, or None."""
    if not isinstance(returned, Observation):
        return f"{show(returned)} ({type(returned).__name__}), expected an Observation"
    if not isinstance(returned.steps, tuple):
        return f"steps {show(returned.steps)}, expected a tuple of Observables"
    if len(returned.steps) != len(vector.steps):
        return f"{len(returned.steps)} step observations for a vector of {len(vector.steps)} steps"
    if not isinstance(returned.notes, tuple) or not all(isinstance(n, str) for n in returned.notes):
        return f"notes {show(returned.notes)}, expected a tuple of str"
    for number, step in enumerate(returned.steps, start=1):
        if not isinstance(step, Observables):
            return f"step {number} is {show(step)} ({type(step).__name__}), expected Observables"
        for name, (kind, ok) in FIELDS.items():
            value = getattr(step, name)
            if value is not None and not ok(value):
                return f"field `{name}` of step {number} is {show(value)}, expected {kind}{hint(name, value)}"
        if not _withheld(step.withheld):
            return f"field `withheld` of step {number} is {show(step.withheld)}, expected ((observable, reason), ...)"
    return None
