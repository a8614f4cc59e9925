"""The runner: TOML file -> one item per (vector, profile, backend) -> verdict.

Loaded through the `pytest11` entry point. A file that cannot be read is
one collection error; a bad vector in a good file is one error item, and
the file's other vectors still run; a backend that raises or hangs fails
its own item.
"""

from __future__ import annotations

import gc
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from . import __version__, backend_options, flagselect, known, runmeta, schema, select, validate, workers
from .cache import LazySuite, VectorHead, Writes, gc_paused, load_lazily
from .contract import Backend, KnownFailure
from .errors import LoadError
from .expectations import DECLARED_BUT_PASSED, Expectation
from .isolation import BackendRaised, Fault
from .load import VectorError
from .model import Observation, Profile, Vector
from .registry import Registry
from .report import RESULT_KEY, SELECTED_BACKENDS, MatrixReporter, Result
from .results import FlagRef
from .timeout import BackendTimeout, deadline
from .verdict import Verdict, judge


class Chosen:
    """The selected backends, loaded and started on first use: a session
    that collects no vector file (`pytest tests`) loads and starts none."""

    def __init__(
        self,
        registry: Registry,
        choice: select.Choice,
        seconds: float,
        memory_bytes: int | None,
        given: tuple[Expectation, ...] = (),
    ) -> None:
        self.registry, self.choice = registry, choice
        self.seconds, self.memory_bytes = seconds, memory_bytes
        self.given = given  # the --expectations entries
        self.backends: tuple[Backend, ...] | None = None
        self.known: dict[str, known.KnownFailures] = {}

    def get(self) -> tuple[Backend, ...]:
        if self.backends is None:
            select.construct(self.registry, self.choice, self.seconds, self.memory_bytes)
            self.backends = self.with_expectations(select.usable(self.registry, self.choice))
        return self.backends

    def with_expectations(self, backends: list[Backend]) -> tuple[Backend, ...]:
        """Each backend's known failures; one whose expectations file is
        broken does not run, as one that does not load (fail closed)."""
        kept = []
        for backend in backends:
            try:
                self.known[backend.info.name] = known.KnownFailures.gather(backend.info, self.given)
            except LoadError as err:
                self.registry.fail(f"backend {backend.info.name}: expectations file", str(err))
                continue
            kept.append(backend)
        return tuple(kept)

    def close(self) -> None:
        """No child process outlives the session."""
        for name in self.choice.isolated if self.backends is not None else ():
            backend = self.registry.backends.get(name)
            if backend is not None:
                backend.close()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Selection:
    registry: Registry
    chosen: Chosen
    profiles: tuple[Profile, ...]
    suites: tuple[Path, ...]
    timeout: float
    cache: Path | None  # where loaded vector files are cached, if anywhere

    def wanted_by(self, config: pytest.Config) -> bool:
        return names_a_suite(config, self.suites)


def suite_dirs(config: pytest.Config) -> tuple[Path, ...]:
    root = Path(str(config.rootpath))
    return tuple((root / s).resolve() for s in config.getini("conformance_suites"))


def names_a_suite(config: pytest.Config, suites: tuple[Path, ...]) -> bool:
    """The run names a path in or above a suite directory (or names none)."""
    here = Path(str(config.invocation_params.dir))
    for arg in config.args or ["."]:
        path = (here / arg.split("::", 1)[0]).resolve()
        if any(path == s or path.is_relative_to(s) or s.is_relative_to(path) for s in suites):
            return True
    return False


SELECTION = pytest.StashKey[Selection]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance", "kvm-mmu-conformance")
    group.addoption(
        "--backend",
        action="append",
        default=[],
        metavar="NAME",
        help="run this backend (repeatable; default: every available backend)",
    )
    group.addoption(
        "--skip-backend",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this registered backend out: it is neither loaded nor run (repeatable)",
    )
    group.addoption(
        "--isolate",
        action="append",
        default=[],
        metavar="NAME",
        help="run this backend in a child process ('all': every backend); "
        "other distributions' backends are isolated by default",
    )
    group.addoption(
        "--in-process",
        action="append",
        default=[],
        metavar="NAME",
        help="run this backend in the runner's process ('all': every backend); "
        "this project's backends run there by default",
    )
    group.addoption(
        "--conformance-memory-limit",
        type=float,
        default=4.0,
        metavar="GIB",
        help="an isolated backend's child is stopped above this resident size (default 4)",
    )
    group.addoption(
        "--profile",
        action="append",
        default=[],
        choices=[p.value for p in Profile],
        help="run this spec profile (repeatable; default: both)",
    )
    group.addoption(
        "--conformance-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="fail a backend's item after this long (default 60)",
    )
    group.addoption("--conformance-json", metavar="PATH", help="write every item's result as JSON")
    group.addoption(
        "--expectations",
        action="append",
        default=[],
        metavar="FILE",
        help="known failures (an expectations file; each entry names its backend) (repeatable)",
    )
    group.addoption(
        "--flag",
        action="append",
        default=[],
        metavar="NAME",
        help="run only the vectors carrying this flag of suites/flags.toml (repeatable; with --bug-class: any)",
    )
    group.addoption(
        "--bug-class",
        action="append",
        default=[],
        metavar="CLASS",
        help="run only the vectors carrying a flag of this bug class (repeatable; with --flag: any)",
    )
    group.addoption(
        "--backend-option",
        action="append",
        default=[],
        metavar=backend_options.FORMAT,
        help="a setting for one backend, passed to its conformance_backend(options) hook (repeatable)",
    )
    group.addoption(
        "--conformance-no-cache",
        action="store_true",
        help="parse every vector file afresh instead of using pytest's cache directory",
    )
    parser.addini(
        "conformance_suites", "directories whose *.toml files are vector suites", type="linelist", default=["suites"]
    )


def pytest_configure(config: pytest.Config) -> None:
    registry = Registry()
    suites = suite_dirs(config)
    try:
        choice = select.choose(
            registry,
            config.getoption("backend"),
            config.getoption("skip_backend"),
            config.getoption("isolate"),
            config.getoption("in_process"),
            backend_options.parse(config.getoption("backend_option")),
        )
        given = known.load_given(config.getoption("expectations"), registry.sources)
        flags = flagselect.check(config.getoption("flag"), config.getoption("bug_class"), suites)
    except (ValueError, LoadError) as err:  # SelectionError and OptionError are ValueErrors
        raise pytest.UsageError(str(err)) from None
    chosen = Chosen(
        registry,
        choice,
        config.getoption("conformance_timeout"),
        int(config.getoption("conformance_memory_limit") * 2**30) or None,
        given,
    )
    profiles = tuple(Profile(p) for p in config.getoption("profile")) or tuple(Profile)
    cache = None
    if getattr(config, "cache", None) is not None and not config.getoption("conformance_no_cache"):
        cache = Path(config.cache.mkdir("conformance-vectors"))
    config.stash[SELECTION] = Selection(
        registry, chosen, tuple(sorted(set(profiles))), suites, config.getoption("conformance_timeout"), cache
    )
    if any(s.is_dir() for s in suites):
        # One bad vector file must not stop the others from running.
        config.option.continue_on_collection_errors = True
    config.pluginmanager.register(MatrixReporter(config, registry), "conformance-matrix")
    config.pluginmanager.register(ClockPlugin(config), "conformance-clock")
    register_vendor_plugins(config, chosen, suites, flags)


def register_vendor_plugins(
    config: pytest.Config, chosen: Chosen, suites: tuple[Path, ...], flags: dict[str, str]
) -> None:
    """Selection by flag and the stale-expectations check (docs/backends.md)."""
    selection = flagselect.FlagSelection(
        config,
        frozenset(config.getoption("flag")),
        frozenset(config.getoption("bug_class")),
        flags,
        lambda item: item.head if isinstance(item, VectorItem) else None,
    )
    config.pluginmanager.register(selection, "conformance-flags")
    stale = known.StaleCheck(config, known.narrowing(config, suites), lambda: chosen.known, collected_items)
    config.pluginmanager.register(stale, "conformance-stale-expectations")


def collected_items(items: list[pytest.Item]) -> known.CollectedItems:
    return known.CollectedItems(
        tuple((i.backend.info.name, i.profile.value, i.head.id) for i in items if isinstance(i, VectorItem)),
        not any(isinstance(i, LoadErrorItem) for i in items),
    )


STARTED = time.monotonic()  # the plugin loads with pytest's entry points, early in the process (see workers.age)


@pytest.hookimpl(optionalhook=True, tryfirst=True)  # before xdist's own (a worker per CPU)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto` on a suite run: workers only where the last run says they pay (conformance/workers.py)."""
    try:
        cache_dir = str(config.getini("cache_dir"))
    except ValueError:  # `-p no:cacheprovider`: no record to decide from
        return None
    timing = workers.read(workers.cache_file(config.rootpath, cache_dir, config.getoption("backend")))
    if timing is None or not names_a_suite(config, suite_dirs(config)):
        return None  # xdist's own choice: a worker per CPU
    return timing.workers(os.cpu_count() or 1)


@dataclass
class Clock:
    """What this run measured for the next `-n auto` (conformance/workers.py)."""

    startup_seconds: float | None = None
    item_seconds: float = 0.0
    items: int = 0


class ClockPlugin:
    def __init__(self, config: pytest.Config) -> None:
        self.config, self.clock = config, Clock()

    @pytest.hookimpl
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.clock.startup_seconds = workers.age(time.monotonic() - STARTED)

    @pytest.hookimpl
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and ".toml::" in report.nodeid:
            self.clock.item_seconds += report.duration
            self.clock.items += 1

    @pytest.hookimpl
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        cache = getattr(self.config, "cache", None)
        if cache is None or hasattr(self.config, "workerinput") or not self.clock.items:
            return
        backends = self.config.getoption("backend")
        path = workers.cache_file(self.config.rootpath, str(self.config.getini("cache_dir")), backends)
        earlier = workers.read(path)
        spread = (
            len(getattr(self.config.option, "tx", None) or ())
            if self.config.pluginmanager.has_plugin("dsession")
            else 0
        )
        if spread and earlier is not None:
            return  # items timed beside other workers: only a run without workers refreshes a record
        startup = self.clock.startup_seconds  # None under xdist: the controller collects nothing
        if startup is None:
            startup = earlier.startup_seconds if earlier else workers.DEFAULT_STARTUP_SECONDS
        item_seconds = self.clock.item_seconds * workers.share(spread, os.cpu_count() or 1)
        cache.set(workers.key(backends), workers.record(workers.Timing(item_seconds, self.clock.items, startup)))


def pytest_report_header(config: pytest.Config) -> list[str]:
    selection = config.stash[SELECTION]
    if not selection.wanted_by(config):
        return ["conformance backends: not loaded (this run names no vector suite)"]
    digest, count = runmeta.identity(tuple(selection.suites))
    lines = [
        f"conformance suite: kvm-mmu-conformance {__version__}, format {schema.FORMAT}, {digest[:19]} ({count} files)",
        "conformance backends: "
        + (", ".join(f"{b.info.name} {b.info.version}" for b in selection.chosen.get()) or "none"),
        "conformance profiles: " + ", ".join(p.value for p in selection.profiles),
    ]
    lines += [
        f"conformance backend {b.info.name} unavailable: {b.info.unavailable}"
        for b in selection.registry.backends.values()
        if b.info.unavailable
    ]
    lines += list(select.describe(selection.chosen.choice))
    lines += [
        f"conformance known failures of {n}: {len(k.entries)}" for n, k in selection.chosen.known.items() if k.entries
    ]
    lines += [f"conformance plugin error: {e.source}: {e.message}" for e in selection.registry.errors]
    return lines


def pytest_sessionstart(session: pytest.Session) -> None:
    """The results file names the selected backends; ask only when writing one."""
    chosen = session.config.stash[SELECTION].chosen
    session.config.stash[SELECTED_BACKENDS] = lambda: [b.info for b in chosen.get()]


def pytest_unconfigure(config: pytest.Config) -> None:
    writes = config.stash.get(CACHE_WRITES, None)
    if writes is not None:
        writes.wait()
    selection = config.stash.get(SELECTION, None)
    if selection is not None:
        selection.chosen.close()


@pytest.hookimpl(wrapper=True)
def pytest_collection(session: pytest.Session) -> Generator[None, object, object]:
    # Collection builds the session's long-lived objects (every vector, read
    # from the cache or parsed). While it runs, the cyclic GC would walk
    # that growing heap again and again: ten times the collection's own
    # time on a large suite (docs/benchmarks.md). Nothing it builds is
    # cyclic garbage worth finding, so the GC waits until it ends; the
    # vectors then leave the GC's generations for good, which also spares
    # the full collections pytest runs at teardown.
    try:
        with gc_paused():
            result = yield
            if any(isinstance(item, VectorItem) for item in session.items):
                gc.freeze()
        return result
    finally:
        session.config.stash.setdefault(CACHE_WRITES, Writes()).flush()  # what this run loaded afresh


CACHE_WRITES = pytest.StashKey[Writes]()


@dataclass
class Collected:
    """What collection has seen so far: real files (a file reached twice,
    through a symlink, is collected once) and vector ids (unique across files)."""

    files: dict[str, Path]
    ids: dict[str, str]


COLLECTED = pytest.StashKey[Collected]()


def _in_suites(path: Path, config: pytest.Config) -> bool:
    return any(path.resolve().is_relative_to(s) for s in config.stash[SELECTION].suites)


def _utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under a suite directory: no symlink loop, no name pytest cannot report."""
    if SELECTION not in config.stash or not _in_suites(collection_path, config):
        return None
    if not _utf8(collection_path):
        # pytest's own reports and cache encode node ids as UTF-8; say so instead of failing at the end
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"{os.fsencode(collection_path).decode('utf-8', 'backslashreplace')}: the file name is not valid "
                f"UTF-8; not collected (rename it)"
            ),
            2,
        )
        return True
    if collection_path.is_dir() and collection_path.is_symlink():
        real = collection_path.resolve()
        if any(real == parent.resolve() for parent in collection_path.parents):
            config.issue_config_time_warning(
                pytest.PytestConfigWarning(
                    f"{collection_path}: a symlink loop (it leads back to {real}); not followed"
                ),
                2,
            )
            return True
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> VectorFile | None:
    if file_path.suffix != ".toml" or file_path.name == "flags.toml" or not _in_suites(file_path, parent.config):
        return None
    real = str(file_path.resolve())
    if file_path.is_symlink() and _in_suites(Path(real), parent.config) and Path(real).is_file():
        return None  # a link to a suite file: that file is collected under its own path
    collected = parent.config.stash.setdefault(COLLECTED, Collected({}, {}))
    if collected.files.setdefault(real, file_path) != file_path:
        return None  # the same file through another path: collected once, under its first path
    return VectorFile.from_parent(parent, path=file_path)


class VectorFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        selection = self.config.stash[SELECTION]
        try:
            suite = load_lazily(self.path, selection.cache, self.config.stash.setdefault(CACHE_WRITES, Writes()))
        except LoadError as err:
            raise self.CollectError(str(err)) from None
        yield from self.load_errors(suite.heads.errors)
        for vector in suite.heads.heads:
            local = vector.id.split("::", 1)[-1]  # the one spelling: <id> or <table>/<row labels>
            first = self.config.stash[COLLECTED].ids.setdefault(vector.id, f"{vector.path}:{vector.line}")
            if first != f"{vector.path}:{vector.line}":
                yield LoadErrorItem.from_parent(
                    self,
                    name=local,
                    vector_id=vector.id,
                    error=LoadError(
                        vector.path, vector.line, "id", f"duplicate vector id {vector.id!r}: also at {first}"
                    ),
                )
                continue
            for profile in selection.profiles:
                if profile not in vector.profiles:
                    continue
                for backend in selection.chosen.get():
                    if profile not in backend.info.profiles:
                        continue  # not a claim this backend makes: no item, rather than a skip per vector
                    yield VectorItem.from_parent(
                        self,
                        name=f"{local}[{backend.info.name}:{profile.value}]",
                        head=vector,
                        suite=suite,
                        profile=profile,
                        backend=backend,
                    )

    def load_errors(self, errors: tuple[VectorError, ...]) -> Iterator[pytest.Item]:
        for bad in errors:
            yield LoadErrorItem.from_parent(self, name=bad.id.split("::", 1)[-1], vector_id=bad.id, error=bad.error)


class LoadErrorItem(pytest.Item):
    """A vector or table that did not load: one error item naming file,
    line and key, while the file's other vectors run."""

    def __init__(self, *, vector_id: str, error: LoadError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.vector_id, self.error = vector_id, error

    def runtest(self) -> None:
        self.user_properties.append(
            (
                RESULT_KEY,
                json.dumps(
                    Result(self.nodeid, self.vector_id, "loader", "-", "error", str(self.error)).as_dict(),
                    sort_keys=True,
                ),
            )
        )
        raise self.error

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: str | None = None) -> str:
        return f"vector {self.vector_id} not loaded\n{excinfo.value}"

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, max(self.error.line - 1, 0), f"{self.vector_id} [not loaded]"


class ItemFault(Exception):
    """An item that ended without a verdict: the backend crashed, hung,
    raised or returned nonsense, or the framework failed."""

    def __init__(self, outcome: str, message: str, cause: BaseException | None, detail: str = "") -> None:
        super().__init__(message)
        self.outcome, self.message, self.cause, self.detail = outcome, message, cause, detail


class VectorMismatch(Exception):
    def __init__(self, verdict: Verdict) -> None:
        super().__init__("observation differs from the vector")
        self.verdict = verdict


class VectorItem(pytest.Item):
    def __init__(
        self, *, head: VectorHead, suite: LazySuite, profile: Profile, backend: Backend, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.head, self.suite, self.profile, self.backend = head, suite, profile, backend

    @property
    def vector(self) -> Vector:
        """The whole vector, read with its file's first item to run (cache.VectorHead)."""
        return self.suite.vector(self.head.id)

    def record(self, outcome: str, detail: str = "", ignored: tuple[str, ...] = (), known_failure: str = "") -> None:
        """The item's one Result, as JSON (JUnit XML shows it as is; xdist forwards it)."""
        self.user_properties[:] = [p for p in self.user_properties if p[0] != RESULT_KEY]
        result = Result(
            self.nodeid,
            self.head.id,
            self.backend.info.name,
            self.profile.value,
            outcome,
            detail,
            ignored,
            dict(self.backend.info.where),
            self.head.description,
            tuple(FlagRef(f.name, f.bug_class) for f in self.head.flags),
            known_failure,
        )
        self.user_properties.append((RESULT_KEY, json.dumps(result.as_dict(), sort_keys=True)))

    def runtest(self) -> None:
        info = self.backend.info
        unmet = info.unmet(self.head.requires | {f"profile:{self.profile.value}"})
        if unmet:
            self.record("skipped", "; ".join(unmet))
            pytest.skip("unmet: " + "; ".join(unmet))
        try:
            vector = self.vector
        except LoadError as err:
            self.fail_item("error", str(err))
        returned = self.call_backend(vector)
        bad = validate.problem(returned, vector)
        if bad is not None or not isinstance(returned, Observation):
            self.fail_item("error", f"backend {info.name} returned {bad}")
        try:
            verdict = judge(vector, returned, info.observables)
        except Exception as exc:  # the backend's answer was well-formed: this is ours
            self.fail_item("error", f"framework error: the verdict raised {type(exc).__name__}: {exc}", exc)
        if verdict.ignored:
            self.add_report_section(
                "call", "ignored observables", f"backend {info.name} cannot observe: " + "; ".join(verdict.ignored)
            )
        declared = self.config.stash[SELECTION].chosen.known.get(info.name)
        failure = declared.find(self.head.id, self.profile.value) if declared else None
        if failure is not None:
            self.expected_failure(failure, verdict)
        self.record("passed" if verdict.passed else "failed", "\n".join(verdict.diffs), verdict.ignored)
        if not verdict.passed:
            raise VectorMismatch(verdict)

    def call_backend(self, vector: Vector) -> object:
        """run(), with a fault of any kind made this item's outcome. An
        isolated backend's limits are enforced by its proxy from outside the
        child; an in-process one gets the SIGALRM deadline."""
        selection = self.config.stash[SELECTION]
        name = self.backend.info.name
        try:
            if name in selection.chosen.choice.isolated:
                return self.backend.run(vector, self.profile)
            with deadline(selection.timeout):
                return self.backend.run(vector, self.profile)
        except KeyboardInterrupt:
            raise  # ends the session as usual
        except BackendTimeout as exc:
            self.fail_item("timeout", f"backend {name}: {exc}")
        except BaseException as exc:  # SystemExit included: the backend's, not the session's
            if isinstance(exc, Fault):  # an isolated backend's child crashed, hung or grew too big
                self.fail_item(exc.outcome, f"backend {name} {exc.reason}", detail=exc.detail)
            if isinstance(exc, BackendRaised):  # it raised in its child, which lives on
                self.fail_item("error", f"backend {name} raised {exc.reason}", detail=exc.traceback_text)
            self.fail_item("error", f"backend {name} raised {type(exc).__name__}: {exc}", exc)
        raise AssertionError("unreachable")

    def fail_item(self, outcome: str, message: str, cause: BaseException | None = None, detail: str = "") -> NoReturn:
        """Record the item's one outcome, then fail it with `message`."""
        self.record(outcome, message)
        raise ItemFault(outcome, message, cause, detail)

    def expected_failure(self, known: KnownFailure, verdict: Verdict) -> None:
        """A declared failure: failing is expected, passing is an error (strict)."""
        where = f" ({known.origin})" if known.origin else ""
        if verdict.passed:
            self.record("failed", f"{DECLARED_BUT_PASSED} ({known.message}) but passed", verdict.ignored, known.message)
            pytest.fail(
                f"backend {self.backend.info.name} passed an item it declares to fail: {known.message}{where}",
                pytrace=False,
            )
        self.record("xfailed", "\n".join(verdict.diffs), verdict.ignored, known.message)
        self.add_report_section("call", "expected failure", "\n".join(verdict.diffs))
        pytest.xfail(known.message)

    def rerun_command(self) -> str:
        """Works from any directory: this interpreter, the item's absolute path."""
        path, sep, rest = self.nodeid.partition("::")
        target = str(Path(str(self.config.rootpath)) / path) + sep + rest
        return f"{shlex.quote(sys.executable)} -m pytest -p no:xdist {shlex.quote(target)}"

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: str | None = None) -> str:
        where = os.path.relpath(self.path, self.config.rootpath)
        head = [
            f"vector {self.head.id} ({where}:{self.head.line})",
            f"  {self.head.description}",
            f"  backend {self.backend.info.name} {self.backend.info.version}, profile {self.profile.value}",
        ]
        if isinstance(excinfo.value, VectorMismatch):
            body = list(excinfo.value.verdict.diffs)
        elif isinstance(excinfo.value, ItemFault):
            fault = excinfo.value
            body = [fault.message] + ([fault.detail] if fault.detail else [])
            if fault.cause is not None and fault.cause.__traceback__ is not None:
                body.append("".join(traceback.format_exception(fault.cause, limit=-8)).rstrip())
        elif isinstance(excinfo.value, (pytest.xfail.Exception, pytest.fail.Exception)):
            body = [str(excinfo.value)]  # a declared failure, or a declared one that passed: no traceback
        else:
            body = [
                f"backend {self.backend.info.name} raised {excinfo.typename}: {excinfo.value}",
                str(super().repr_failure(excinfo, style="short")),
            ]
        return "\n".join(head + body + [f"re-run: {self.rerun_command()}"])

    def reportinfo(self) -> tuple[Path, int, str]:
        return (
            self.path,
            max(self.head.line - 1, 0),
            f"{self.head.id} [{self.backend.info.name}:{self.profile.value}]",
        )
