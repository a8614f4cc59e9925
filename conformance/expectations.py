"""Expectation files: the items a backend is known to fail, in TOML.

    format = 1                    # optional: the format's version, 1
    backend = "acme"              # optional: the backend of every entry that names none
    description = "..."           # optional, one line

    [bug.<id>]                    # optional: bugs the entries cite
    title = "..."                 # required, one line
    review = "..."                # optional: who found it, and where
    flag = "<flag name>"          # optional: the suite flag whose vectors catch it
    links = ["https://..."]       # optional

    [[expected_failure]]
    pattern = "call/zap-all::*"   # required: fnmatch pattern over vector ids
    reason = "..."                # required, one line
    profile = "mainline"          # optional: only in this profile
    backend = "acme"              # optional: overrides the file's
    bug = "<id>"                  # optional: a [bug.<id>] of this file
    links = ["https://..."]       # optional

A backend's own file (BackendInfo.expectations) may leave `backend` out; a
file given with --expectations must name one for every entry. docs/backends.md
("Expectation files") has the rules the runner applies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import schema
from .contract import KnownBug, KnownFailure
from .errors import RuleViolation
from .model import Profile
from .reading import Document, read_document
from .results import Result
from .schema import Array, Field, Int, MapOf, Published, Str, Table

FORMAT = 1
# A declared failure that passed is recorded as failed with this detail (and
# its known_failure); it is not a failure to carry into a new expectations file.
DECLARED_BUT_PASSED = "declared to fail"

LINE = Str(one_line=True)
BUG_ID = Str(r"^[A-Za-z0-9][A-Za-z0-9._#-]*$", "bug id")
BACKEND = Str(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$", "backend name")
LINKS = Array(Str(one_line=True))
BUG = Table(
    "bug",
    (
        Field("title", LINE, True, "one line: what is wrong"),
        Field("review", LINE, False, "who found it, and where"),
        Field("flag", Str(schema.ID_PATTERN, "flag name"), False, "the suite flag whose vectors catch it"),
        Field("links", LINKS, False, "where to read more"),
    ),
)
ENTRY = Table(
    "expected_failure",
    (
        Field("pattern", LINE, True, "an fnmatch pattern over vector ids"),
        Field("reason", LINE, True, "one line: why the items fail"),
        Field("profile", schema.enum_choice(Profile), False, "only in this profile"),
        Field("backend", BACKEND, False, "the backend it applies to (default: the file's)"),
        Field("bug", BUG_ID, False, "a [bug.<id>] of this file"),
        Field("links", LINKS, False, "where to read more"),
    ),
)
FILE = Table(
    "expectations file",
    (
        Field("format", Int(values=(FORMAT,)), False, f"the format's version: {FORMAT}"),
        Field("backend", BACKEND, False, "the backend of every entry that names none"),
        Field("description", LINE, False, "one line"),
        Field("bug", MapOf(BUG_ID, BUG), False, "bugs the entries cite"),
        Field("expected_failure", Array(ENTRY), False, "the known failures"),
    ),
)

DOCUMENT = Published(
    "kvm-mmu-conformance expectations file", FILE, kind="expectations-file", format=FORMAT, docs="docs/backends.md"
)


@dataclass(frozen=True)
class Expectation:
    """One entry: the backend it applies to and the failure it declares."""

    backend: str
    failure: KnownFailure


def load(
    path: str | os.PathLike[str], owner: str | None = None, registered: Collection[str] | None = None
) -> tuple[Expectation, ...]:
    """The entries of one file; any problem is a LoadError naming file, line and key.

    `owner`: the backend whose own file this is (BackendInfo.expectations):
    its entries may leave `backend` out and may name no other backend.
    None: a file given with --expectations, where every entry names one,
    and, if `registered` is given, one of those.
    """
    doc = read_document(path)
    try:
        return _entries(doc, owner, registered)
    except RuleViolation as violation:
        raise doc.error(violation) from None


def _entries(doc: Document, owner: str | None, registered: Collection[str] | None) -> tuple[Expectation, ...]:
    data = doc.data
    schema.check(data, FILE, ())
    bugs = {name: _bug(name, value) for name, value in data.get("bug", {}).items()}
    default = data.get("backend")
    entries = []
    for number, entry in enumerate(data.get("expected_failure", [])):
        at = ("expected_failure", number)
        backend = entry.get("backend", default)
        where = at + ("backend",) if "backend" in entry else ("backend",)
        if owner is None and backend is None:
            schema.fail(
                at, 'names no backend: a file given with --expectations needs backend = "NAME" at its top or here'
            )
        if owner is not None and backend not in (None, owner):
            schema.fail(where, f"names backend {backend!r}, but this is the expectations file of backend {owner!r}")
        if registered is not None and backend is not None and backend not in registered:
            names = ", ".join(sorted(registered)) or "none"
            schema.fail(where, f"names backend {backend!r}, which is not registered; registered: {names}")
        if "bug" in entry and entry["bug"] not in bugs:
            known = ", ".join(sorted(bugs)) or "none"
            schema.fail(
                at + ("bug",), f"unknown bug {entry['bug']!r}: define it as [bug.{entry['bug']}]; defined: {known}"
            )
        failure = KnownFailure(
            pattern=entry["pattern"],
            reason=entry["reason"],
            profile=entry.get("profile"),
            bug=bugs.get(entry.get("bug", "")),
            links=tuple(entry.get("links", ())),
            origin=f"{doc.path}:{doc.line(at)}",
        )
        entries.append(Expectation(backend or owner or "", failure))
    return tuple(entries)


def _bug(name: str, value: Mapping[str, Any]) -> KnownBug:
    return KnownBug(
        id=name,
        title=value["title"],
        review=value.get("review", ""),
        flag=value.get("flag", ""),
        links=tuple(value.get("links", ())),
    )


# ---------------------------------------------------------------- writing one from results


def escape(vector_id: str) -> str:
    """A pattern that matches exactly this id (fnmatch has no escape character)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in vector_id)


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, but for DEL."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _reason(result: Result) -> str:
    """The declared reason of an expected failure, else the first line of its difference."""
    lines = (result.known_failure or result.detail).strip().splitlines()[:1]
    reason = lines[0].strip() if lines else ""
    return (reason[:197] + "...") if len(reason) > 200 else reason or f"{result.outcome} when recorded"


def _expected(result: Result) -> bool:
    """A wrong observation: failed (but not a listed item that passed) or xfailed."""
    if result.outcome == "xfailed":
        return True
    passed_listed = bool(result.known_failure) or result.detail.startswith(DECLARED_BUT_PASSED)  # older files
    return result.outcome == "failed" and not passed_listed


def failures(results: Iterable[Result], backend: str) -> list[tuple[str, str | None, str]]:
    """(vector id, profile or None, reason) for each failing vector of `backend`:
    None when it fails in every profile it ran in."""
    ran: dict[str, set[str]] = {}
    failed: dict[str, dict[str, str]] = {}
    for result in results:
        if result.backend != backend:
            continue
        ran.setdefault(result.vector, set()).add(result.profile)
        if _expected(result):
            failed.setdefault(result.vector, {})[result.profile] = _reason(result)
    out: list[tuple[str, str | None, str]] = []
    for vector, by_profile in sorted(failed.items()):
        if set(by_profile) == ran[vector] and len(set(by_profile.values())) == 1:
            out.append((vector, None, next(iter(by_profile.values()))))
        else:
            out += [(vector, profile, reason) for profile, reason in sorted(by_profile.items())]
    return out


def render(backend: str, entries: Iterable[tuple[str, str | None, str]], source: str) -> str:
    """An expectations file for `backend` with one entry per failing vector."""
    lines = [
        f"# Known failures of backend {backend}, written by `python -m conformance expectations`",
        f'# from {source}. Review each reason; the format is in docs/backends.md ("Expectation files").',
        f"format = {FORMAT}",
        f"backend = {toml_string(backend)}",
    ]
    for vector, profile, reason in entries:
        lines += ["", "[[expected_failure]]", f"pattern = {toml_string(escape(vector))}"]
        lines += [f"profile = {toml_string(profile)}"] if profile else []
        lines.append(f"reason = {toml_string(reason)}")
    return "\n".join(lines) + "\n"
