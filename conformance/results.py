"""The results file: a versioned document of runs and their items.

`--conformance-json` writes one run; `python -m conformance report --json`
writes several merged. `conformance/schemas/results.schema.json` describes
the format and docs/results.md explains it. A reader accepts the formats it
knows and ignores keys it does not; the bare list that earlier versions
wrote is read as one run marked `legacy`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

FORMAT = 1  # bumped when a key is removed or changes meaning; new keys keep it
SCHEMA_ID = f"urn:kvm-mmu-conformance:results:format-{FORMAT}"
# crashed: the backend's process died (a signal, an exit); timeout: it did not
# answer within the item's limit (or ran out of its memory limit)
OUTCOMES = ("passed", "failed", "error", "crashed", "timeout", "skipped", "xfailed")


class ResultsError(ValueError):
    """A results file that cannot be read."""


def _facts(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class FlagRef:
    name: str
    bug_class: str


@dataclass(frozen=True)
class Result:
    """One item's outcome. `detail` is the diff of a failure, the reason of
    a skip or the error; `known_failure` the declared reason of an item the
    backend is listed to fail (xfailed, or failed because it passed)."""

    nodeid: str
    vector: str
    backend: str
    profile: str
    outcome: str  # one of OUTCOMES
    detail: str = ""
    ignored: tuple[str, ...] = ()
    where: Mapping[str, str] = field(default_factory=dict)  # the machine the backend ran on (BackendInfo.where)
    description: str = ""
    flags: tuple[FlagRef, ...] = ()
    known_failure: str = ""
    run: int = 0  # index into the document's runs

    def as_dict(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        return {
            **plain,
            "ignored": list(self.ignored),
            "where": dict(self.where),
            "flags": [{"name": f.name, "bug_class": f.bug_class} for f in self.flags],
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Result:
        try:
            return cls(
                nodeid=str(value["nodeid"]),
                vector=str(value["vector"]),
                backend=str(value["backend"]),
                profile=str(value["profile"]),
                outcome=str(value["outcome"]),
                detail=str(value.get("detail", "")),
                ignored=tuple(str(i) for i in value.get("ignored", ())),
                where=_facts(value.get("where")),
                description=str(value.get("description", "")),
                flags=tuple(FlagRef(str(f["name"]), str(f["bug_class"])) for f in value.get("flags", ())),
                known_failure=str(value.get("known_failure", "")),
                run=int(value.get("run", 0)),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ResultsError(f"an item lacks or mangles {err}: {dict(value)!r:.200}") from None


@dataclass(frozen=True)
class BackendRecord:
    name: str
    version: str
    details: Mapping[str, str] = field(default_factory=dict)
    where: Mapping[str, str] = field(default_factory=dict)
    unavailable: str = ""

    def as_dict(self) -> dict[str, Any]:
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**plain, "details": dict(self.details), "where": dict(self.where)}

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> BackendRecord:
        return cls(
            str(value["name"]),
            str(value.get("version", "")),
            _facts(value.get("details")),
            _facts(value.get("where")),
            str(value.get("unavailable", "")),
        )


@dataclass(frozen=True)
class Run:
    """One pytest session: what ran, where and when."""

    framework_version: str = ""
    suite_hash: str = ""  # "sha256:<hex>" over the suite directories' files, flags.toml included
    suite_files: int = 0
    suite_format: int = 0  # the vector format the suite is written in
    backends: tuple[BackendRecord, ...] = ()
    host: str = ""  # platform.node()
    kernel: str = ""  # platform.release()
    started: str = ""  # UTC, ISO 8601
    finished: str = ""
    argv: tuple[str, ...] = ()  # sys.argv
    args: tuple[str, ...] = ()  # pytest's own arguments
    cwd: str = ""
    exit_status: int | None = None
    legacy: bool = False  # read from a bare list of items: nothing above is known
    source: str = ""  # the file it was read from

    def as_dict(self) -> dict[str, Any]:
        return {
            "framework": {"name": "kvm-mmu-conformance", "version": self.framework_version},
            "suite": {"hash": self.suite_hash, "files": self.suite_files, "format": self.suite_format},
            "backends": [b.as_dict() for b in self.backends],
            "host": {"name": self.host, "kernel": self.kernel},
            "started": self.started,
            "finished": self.finished,
            "command": {"argv": list(self.argv), "args": list(self.args), "cwd": self.cwd},
            "exit_status": self.exit_status,
            "legacy": self.legacy,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> Run:
        try:
            suite, host, command = value.get("suite", {}), value.get("host", {}), value.get("command", {})
            status = value.get("exit_status")
            return cls(
                framework_version=str(value.get("framework", {}).get("version", "")),
                suite_hash=str(suite.get("hash", "")),
                suite_files=int(suite.get("files", 0)),
                suite_format=int(suite.get("format", 0)),
                backends=tuple(BackendRecord.from_dict(b) for b in value.get("backends", ())),
                host=str(host.get("name", "")),
                kernel=str(host.get("kernel", "")),
                started=str(value.get("started", "")),
                finished=str(value.get("finished", "")),
                argv=tuple(str(a) for a in command.get("argv", ())),
                args=tuple(str(a) for a in command.get("args", ())),
                cwd=str(command.get("cwd", "")),
                exit_status=None if status is None else int(status),
                legacy=bool(value.get("legacy", False)),
                source=str(value.get("source", "")),
            )
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise ResultsError(f"a run lacks or mangles {err}") from None


@dataclass(frozen=True)
class Results:
    runs: tuple[Run, ...]
    results: tuple[Result, ...]

    @property
    def legacy(self) -> bool:
        return any(r.legacy for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "$schema": SCHEMA_ID,
            "format": FORMAT,
            "runs": [r.as_dict() for r in self.runs],
            "results": [r.as_dict() for r in self.results],
        }


def from_json(data: Any, source: str = "") -> Results:
    """A parsed results file, of this format or the legacy bare list."""
    if isinstance(data, list):
        items = tuple(Result.from_dict(_mapping(r)) for r in data)
        return Results((Run(legacy=True, source=source),), items)
    if not isinstance(data, Mapping):
        raise ResultsError(f"expected an object with runs and results, found {type(data).__name__}")
    version = data.get("format")
    if version != FORMAT:
        raise ResultsError(f"results format {version!r}; this reader knows format {FORMAT} and the legacy list")
    runs = tuple(Run.from_dict(_mapping(r)) for r in _list(data, "runs"))
    runs = tuple(r if r.source else replace(r, source=source) for r in runs)  # a merged file keeps each run's own
    results = tuple(Result.from_dict(_mapping(r)) for r in _list(data, "results"))
    bad = sorted({r.run for r in results if not 0 <= r.run < len(runs)})
    if bad:
        raise ResultsError(f"items name run(s) {bad}, but the file has {len(runs)} run(s)")
    return Results(runs, results)


def _mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ResultsError(f"expected an object, found {type(value).__name__}")
    return value


def _list(data: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ResultsError(f"{key!r} must be a list")
    return value


def load_results(path: str | Path) -> Results:
    """A results file; ResultsError names the file when it cannot be read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return from_json(data, Path(path).name)
    except (OSError, ValueError) as err:  # ResultsError and JSONDecodeError are ValueErrors
        raise ResultsError(f"{path}: {err}") from None


def dump(results: Results, path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as out:
        json.dump(results.as_dict(), out, indent=1)
        out.write("\n")
