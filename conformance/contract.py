"""What a backend declares and what it must do. Backends never see TOML."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeGuard, runtime_checkable

from . import capabilities
from .model import Layer, Observable, Observation, Profile, Vector, VmType


@dataclass(frozen=True)
class KnownFailure:
    """Items a backend is declared to fail, e.g. a model of known-buggy code.

    `pattern` is an fnmatch pattern over vector ids; `profile`, if set,
    limits it to one profile. The runner turns a matching failure into an
    expected one and a matching pass into a failure (strict): the list must
    be exactly right.
    """

    pattern: str
    reason: str
    profile: str | None = None

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

    provided: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
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
