"""Checks of what a backend declares, run where it is built (BackendInfo,
KnownFailure), so that a wrong type is reported with its field and the
spelling that works, not as a skip or a KeyError far inside a run."""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import capabilities

COLLECTIONS = (set, frozenset, list, tuple)


def _spell(kind: type[enum.Enum], member: enum.Enum) -> str:
    return f"conformance.{kind.__name__}.{member.name}"


def _bad_member(field: str, item: Any, kind: type[enum.Enum]) -> str:
    """Why `item` is not a member of `kind`, with the member it should be."""
    if isinstance(item, str):
        member = next((m for m in kind if m.value == item), None)
        if member is not None:
            return f"{field}: {item!r} is a str; use {_spell(kind, member)} (or {kind.__name__}({item!r}))"
        return f"{field}: {item!r} is a str; use one of " + ", ".join(_spell(kind, m) for m in kind)
    return f"{field}: {item!r} is a {type(item).__name__}; expected members of conformance.{kind.__name__}"


def members(field: str, value: Any, kind: type[enum.Enum]) -> None:
    """A frozenset of `kind` members (a str enum's plain strings are not)."""
    if isinstance(value, COLLECTIONS):
        bad = sorted((item for item in value if not isinstance(item, kind)), key=repr)
        if bad:
            raise TypeError(_bad_member(field, bad[0], kind))
    if not isinstance(value, frozenset):
        raise TypeError(f"{field}: a {type(value).__name__}; expected a frozenset of conformance.{kind.__name__}")


def text(field: str, value: Any, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{field}: {value!r} is not a non-empty str")


def strings(field: str, value: Any) -> None:
    """A tuple of str (a list would make the frozen dataclass unhashable)."""
    if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{field}: {value!r}; expected a tuple of str")


def string_map(field: str, value: Any) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise TypeError(f"{field}: {value!r}; expected a mapping of str to str")


def tags(field: str, value: Any) -> None:
    """Capability tags a vector can require; anything else is a typo that would meet nothing."""
    if not isinstance(value, frozenset) or not all(isinstance(tag, str) for tag in value):
        raise TypeError(f"{field}: {value!r}; expected a frozenset of str (tags of conformance.CAPABILITY_TAGS)")
    unknown = sorted(tag for tag in value if not capabilities.known(tag))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(capabilities.TAGS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"{field}: unknown capability tag {unknown[0]!r}{hint}; the tags are conformance.CAPABILITY_TAGS"
        )


def instances(field: str, value: Any, kind: type) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, kind) for v in value):
        raise TypeError(f"{field}: {value!r:.200}; expected a tuple of {kind.__name__}")


def absolute_path(field: str, value: Any) -> None:
    """A file the framework reads, wherever the run starts: absolute."""
    if value is None:
        return
    if not isinstance(value, Path):
        raise TypeError(f"{field}: {value!r} is a {type(value).__name__}; use a pathlib.Path")
    if not value.is_absolute():
        raise ValueError(
            f"{field}: {str(value)!r} is relative; use an absolute path such as Path(__file__).with_name(...)"
        )
