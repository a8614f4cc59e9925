"""What a backend declares and what it must do. Backends never see TOML."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeGuard, runtime_checkable

from . import capabilities, declared
from .model import Layer, Observable, Observation, Profile, Vector, VmType


@dataclass(frozen=True)
class KnownBug:
    """A bug that known failures cite (an expectations file's `[bug.<id>]`)."""

    id: str
    title: str
    review: str = ""  # who found it, and where
    flag: str = ""  # the suite flag whose vectors catch it
    links: tuple[str, ...] = ()


@dataclass(frozen=True)
class KnownFailure:
    """Items a backend is declared to fail, e.g. a model of known-buggy code.

    `pattern` is an fnmatch pattern over vector ids; `profile`, if set,
    limits it to one profile. The runner turns a matching failure into an
    expected one and a matching pass into a failure (strict): the list must
    be exactly right, and an entry that matches no item of a full run is an
    error too (docs/backends.md, "Expectation files").
    """

    pattern: str
    reason: str
    profile: str | None = None  # a Profile value ("mainline"); a Profile member is stored as its value
    bug: KnownBug | None = None
    links: tuple[str, ...] = ()
    origin: str = ""  # where it was declared ("file:line"); empty for BackendInfo.known_failures

    def __post_init__(self) -> None:
        declared.text("KnownFailure.pattern", self.pattern)
        declared.text("KnownFailure.reason", self.reason)
        declared.strings("KnownFailure.links", self.links)
        if self.bug is not None and not isinstance(self.bug, KnownBug):
            raise TypeError(f"KnownFailure.bug: {self.bug!r}; expected a conformance.KnownBug or None")
        if self.profile is not None:
            if self.profile not in {p.value for p in Profile}:
                raise ValueError(
                    f"KnownFailure.profile: {self.profile!r}; use one of "
                    + ", ".join(f"conformance.Profile.{p.name}" for p in Profile)
                )
            object.__setattr__(self, "profile", Profile(self.profile).value)

    @property
    def message(self) -> str:
        """The reason as reports show it, with the bug it comes from."""
        if self.bug is None:
            return self.reason
        return f"bug {self.bug.id} ({self.bug.review or self.bug.title}): {self.reason}"

    def matches(self, vector_id: str, profile: str) -> bool:
        return self.profile in (None, profile) and fnmatch.fnmatchcase(vector_id, self.pattern)


@dataclass(frozen=True)
class BackendInfo:
    name: str
    version: str
    profiles: frozenset[Profile]
    layers: frozenset[Layer]
    vm_types: frozenset[VmType]
    observables: frozenset[Observable]
    capabilities: frozenset[str] = frozenset()  # further capability tags (see docs/vectors.md)
    unavailable: str | None = None  # why the backend cannot run at all
    explanations: Mapping[str, str] = field(default_factory=dict)  # tag -> why it is missing
    details: Mapping[str, str] = field(default_factory=dict)  # probed facts shown by `conformance backends`
    # Short facts about the machine the backend runs on (kernel release, MMU,
    # ...), carried into every result so merged results say where each ran.
    where: Mapping[str, str] = field(default_factory=dict)
    known_failures: tuple[KnownFailure, ...] = ()
    # An expectations file (docs/backends.md, "Expectation files") the runner
    # loads for this backend, in addition to known_failures.
    expectations: Path | None = None

    provided: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.check()
        # Every item asks; compute the tag set once.
        object.__setattr__(
            self,
            "provided",
            (
                frozenset(f"profile:{p.value}" for p in self.profiles)
                | frozenset(f"layer:{layer.value}" for layer in self.layers)
                | frozenset(f"vm:{t.value}" for t in self.vm_types)
                | self.capabilities
            ),
        )

    def check(self) -> None:
        """Every field of the declared type: a plain string where an enum
        member belongs is named with the member to use."""
        declared.text("BackendInfo.name", self.name)
        declared.text("BackendInfo.version", self.version)
        for name, kind in (("profiles", Profile), ("layers", Layer), ("vm_types", VmType), ("observables", Observable)):
            declared.members(f"BackendInfo.{name}", getattr(self, name), kind)
        if not self.observables and not self.unavailable:
            raise ValueError("BackendInfo.observables: empty; a backend that observes nothing would pass every item")
        declared.tags("BackendInfo.capabilities", self.capabilities)
        declared.text("BackendInfo.unavailable", self.unavailable, optional=True)
        for name in ("explanations", "details", "where"):
            declared.string_map(f"BackendInfo.{name}", getattr(self, name))
        declared.instances("BackendInfo.known_failures", self.known_failures, KnownFailure)
        declared.absolute_path("BackendInfo.expectations", self.expectations)

    def known_failure(self, vector_id: str, profile: str) -> KnownFailure | None:
        return next((k for k in self.known_failures if k.matches(vector_id, profile)), None)

    def unmet(self, requires: frozenset[str]) -> list[str]:
        """The requirements this backend does not meet, each with its reason."""
        if self.unavailable:
            return [f"backend {self.name} unavailable: {self.unavailable}"]
        return [f"{tag}: {self.explain(tag)}" for tag in sorted(requires) if not capabilities.met(tag, self.provided)]

    def explain(self, tag: str) -> str:
        wanted = capabilities.version_tag(tag)
        releases = sorted(v[1] for v in map(capabilities.version_tag, self.provided) if v and v[0] == "linux")
        if wanted is not None and wanted[0] == "since" and releases:
            return (
                f"the outcome is that of Linux >= {wanted[1][0]}.{wanted[1][1]}; backend {self.name} behaves as "
                f"Linux {releases[-1][0]}.{releases[-1][1]}"
            )
        return self.explanations.get(tag, f"not provided by backend {self.name}")


@runtime_checkable
class Backend(Protocol):
    info: BackendInfo

    def run(self, vector: Vector, profile: Profile) -> Observation:
        """Build the vector's initial state, perform its steps, observe.

        Return one Observables per step; leave an observable None when it
        cannot be seen. Raise on internal failure: the runner turns it into
        that item's error.
        """
        ...


def is_backend(obj: object) -> TypeGuard[Backend]:
    """Whether an object a hook returned has what the runner relies on: an
    `info` that is a BackendInfo and a callable `run`."""
    return isinstance(getattr(obj, "info", None), BackendInfo) and callable(getattr(obj, "run", None))
