"""Which backends a run uses and where each runs, decided by name before any
backend is imported or constructed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .contract import Backend
from .registry import Registry

ALL = "all"


class SelectionError(ValueError):
    """A selection that names no registered backend."""


@dataclass(frozen=True)
class Choice:
    names: tuple[str, ...]  # entry points to load, sorted
    explicit: bool  # named with --backend: used even if unavailable
    skipped: tuple[str, ...]  # excluded by --skip-backend, never loaded
    isolated: frozenset[str]  # run in a child process
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # --backend-option, by backend


def choose(
    registry: Registry,
    wanted: Sequence[str],
    skipped: Sequence[str],
    isolate: Sequence[str] = (),
    in_process: Sequence[str] = (),
    options: Mapping[str, Mapping[str, str]] | None = None,
) -> Choice:
    """`wanted` empty means every registered backend but the skipped ones.
    Third-party backends are isolated unless named by `in_process`; this
    project's run in-process unless named by `isolate` (or `all` for each).
    `options` (backend -> key -> value) must name registered backends only."""
    options = options or {}
    for given, where in ((set(wanted) | set(skipped), ""), (set(options), " in --backend-option")):
        unknown = sorted(given - set(registry.sources))
        if unknown:
            errors = "".join(f"; plugin error: {e.source}: {e.message}" for e in registry.errors)
            raise SelectionError(
                f"unknown backend(s){where} {', '.join(unknown)}; registered: "
                f"{', '.join(sorted(registry.sources)) or 'none'}{errors}"
            )
    names = tuple(sorted(set(wanted) - set(skipped))) if wanted else tuple(sorted(set(registry.sources) - set(skipped)))
    isolated = frozenset(n for n in names if wants_isolation(registry, n, isolate, in_process))
    return Choice(names, bool(wanted), tuple(sorted(set(skipped))), isolated, options)


def wants_isolation(registry: Registry, name: str, isolate: Sequence[str], in_process: Sequence[str]) -> bool:
    if name in in_process:
        return False
    if name in isolate:
        return True
    if ALL in in_process:
        return False
    return ALL in isolate or not registry.sources[name].first_party


def construct(registry: Registry, choice: Choice, seconds: float, memory_bytes: int | None) -> None:
    """Load the in-process backends here and start the isolated ones in
    their child processes; every failure becomes a registry error."""
    registry.load((n for n in choice.names if n not in choice.isolated), choice.options)
    if not choice.isolated:
        return
    from .isolation import IsolatedBackend, Limits, NoBackend, StartupError

    for name in sorted(choice.isolated):
        source = registry.sources[name]
        try:
            registry.backends[name] = IsolatedBackend(
                name, Limits(seconds, memory_bytes), options=choice.options.get(name, {})
            )
        except NoBackend:
            continue  # a plugin of the group that provides only mutants
        except StartupError as err:
            registry.fail(f"{source.where()} (isolated)", err.reason)


def usable(registry: Registry, choice: Choice) -> list[Backend]:
    """The backends to collect items for: those named, or every available one."""
    if choice.explicit:
        return [registry.backends[n] for n in choice.names if n in registry.backends]
    return [b for n, b in sorted(registry.backends.items()) if n in choice.names and not b.info.unavailable]


def describe(choice: Choice) -> Iterable[str]:
    if choice.skipped:
        yield f"conformance backends skipped by request: {', '.join(choice.skipped)}"
    if choice.isolated:
        yield f"conformance backends isolated in child processes: {', '.join(sorted(choice.isolated))}"
