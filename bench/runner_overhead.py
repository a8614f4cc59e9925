"""What the conformance runner costs per item, against bare pytest, in paired rounds.

One invocation measures, on the reference backend:

1. per item, against the *floor* (bare pytest, ``-p no:conformance``, on as
   many trivial parametrised items), serial (``-p no:xdist``), at 1x and Kx
   the suite's size: *warm* (the vector cache filled by an earlier identical
   run) and *cold* (the cache enabled, its directory emptied before every
   run, so every file is parsed, validated and written); goals: warm <= 1.1x,
   cold <= 1.2x;
2. ``--collect-only``, cold and warm, against the floor's ``--collect-only``;
3. ``-n auto`` against serial, warm, at 1x and Kx: serial time / ``-n auto``
   time (goals: >= 1.0 at 1x, >= 1.5 at Kx);
4. start-up in a project without tests: bare pytest, the same with the
   conformance plugin, and that with hypothesis's pytest plugin loaded too
   (every other run blocks it: ``-p no:hypothesispytest``);
5. peak memory per item: the max RSS of the serial suite run (warm, and
   cold) minus the floor's, at the same item count, divided by the items.

Method. Commands that are compared run in one *block*, back to back, and
every round runs every block (the cheap ones several times). A figure is
computed per round, from that round's runs only, and the report gives the
min, median and max of the per-round figures. The order inside a block is
reversed every other time (A B C, then C B A), so no command always runs
first, and each compared pair stays adjacent. Every command has its own
pytest cache directory in the scratch area (``-o cache_dir=...``); a cold
command's is deleted before each of its runs (not timed). An unmeasured
warm-up round runs every other command once exactly as measured, so each
finds what an identical earlier run left in its cache (loaded vectors, the
timings ``-n auto`` decides from), and fills a scratch bytecode cache
(``PYTHONPYCACHEPREFIX``; this environment sets ``PYTHONDONTWRITEBYTECODE``)
so that no run pays for compiling modules.

Every run is a ``subprocess.Popen`` reaped with ``os.wait4``: the wall time
(``perf_counter`` around both), the child's CPU time and its peak RSS
(``ru_maxrss``) come from the same run. Linux counts in a child's
``ru_maxrss`` the peak RSS of the process it was started from, so the
script checks that the runs of each memory figure peak above its own peak.

The suite is the one installed beside the measured code (the checkout's
``suites/`` in an editable install). It is copied into scratch projects as
one suite root ``s`` holding its ``flags.toml`` and ``c0`` (1x) or ``c0`` ...
``cK-1`` (Kx): vector ids are paths under the suite root and must be unique
in a run. The copies are identical, so whatever the loader memoises by
content within a process serves copies 2..K for free in a cold run, which a
genuinely K times larger suite would not (the warm run reads each copy's
cache entry).

The code measured is what ``import conformance`` finds in this interpreter.
When that is an editable install (the project's venv), the packages
installed from its checkout (and the suite) are copied into the scratch
area when the benchmark starts, and the children import that copy (it is
first on their ``PYTHONPATH``): the checkout may change during a run, the
code measured does not. ``--live`` runs the checkout itself instead. The
script records the checkout's commit, and fingerprints its sources before
every round to say whether they changed during the run.

    python bench/runner_overhead.py [--repeat N] [--scale K] [--quick] [--live]

docs/benchmarks.md (the runner section) has the figures and how to read them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "runner_overhead.json"
DEFAULT_REPEAT, DEFAULT_SCALE = 3, 10
QUICK_REPEAT, QUICK_SCALE = 2, 2
# times each block runs per round (0: not at all): start-up is cheap, so it gets more samples;
# --quick measures only the Kx blocks (they exercise everything the 1x ones do)
INNER = {"startup": 10, "1x": 1, "Kx": 1}
QUICK_INNER = {"startup": 3, "1x": 0, "Kx": 1}
GOAL_WARM, GOAL_COLD = 1.1, 1.2  # suite / floor per item, at most
GOAL_NAUTO_1X, GOAL_NAUTO_KX = 1.0, 1.5  # serial / -n auto, at least
NO_HYPOTHESIS = ("-p", "no:hypothesispytest")
SERIAL = ("-p", "no:xdist", *NO_HYPOTHESIS, "-q")
NAUTO = (*NO_HYPOTHESIS, "-q", "-n", "auto")
BACKEND = ("--backend", "reference")
NO_PLUGIN = ("-p", "no:conformance")
COLLECT = ("--collect-only",)
NO_TESTS = 5  # pytest's exit code when nothing was collected
COLLECTED = re.compile(r"(\d+) tests? collected")
SESSION = re.compile(r" in (\d+(?:\.\d+)?)s\b")
FLOOR_TEST = """import pytest


@pytest.mark.parametrize("i", range({n}))
def test_trivial(i):
    pass
"""
# The work floor: the items' own work (the backend's run() and the verdict) in
# bare pytest, with the vectors unpickled from one file: the least a
# hand-written harness for the same vectors would do. The GC is kept off
# while they load, as the runner does, so the floor is not slowed by it.
WORK_FLOOR_TEST = """import gc
import pickle

import pytest
from conformance.verdict import judge
from conformance_reference.plugin import ReferenceBackend

gc.disable()
with open("work.pickle", "rb") as f:
    CASES = pickle.load(f)
gc.freeze()
gc.enable()
BACKEND = ReferenceBackend()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_vector(case):
    _, vector, profile = case
    assert judge(vector, BACKEND.run(vector, profile), BACKEND.info.observables).passed
"""
# Run in the suite project by the measured code: every (id, vector, profile) the reference backend runs.
WORK_CASES = """import pickle, sys
from conformance.load import load_all
loaded = load_all(sys.argv[1:])
assert not loaded.errors, loaded.errors[:3]
cases = [(f"{v.id}[{p.value}]", v, p) for v in loaded.vectors for p in sorted(v.profiles, key=lambda p: p.value)]
with open("work.pickle", "wb") as f:
    pickle.dump(cases, f, protocol=pickle.HIGHEST_PROTOCOL)
print(len(cases))
"""


# ---------------------------------------------------------------- commands, blocks, measures


@dataclass(frozen=True)
class Command:
    """One pytest invocation. ARGS is a tuple, built afresh for each command: none can mutate another's."""

    name: str
    args: tuple[str, ...]
    cwd: Path
    items: int
    cache: Path  # this command's own pytest cache directory
    cold: bool = False  # delete the cache directory before every run (and no warm-up run)
    ok_codes: tuple[int, ...] = (0,)

    def argv(self, args: Sequence[str] | None = None) -> list[str]:
        """A new list on every call: python -m pytest ARGS -o cache_dir=CACHE."""
        return [sys.executable, "-m", "pytest", *(self.args if args is None else args), "-o", f"cache_dir={self.cache}"]


def command(
    name: str,
    parts: Iterable[Sequence[str]],
    cwd: Path,
    items: int,
    scratch: Path,
    *,
    cold: bool = False,
    ok_codes: tuple[int, ...] = (0,),
) -> Command:
    """A command whose arguments are PARTS concatenated into a new tuple, with its cache in SCRATCH/cache/NAME."""
    args = tuple(a for part in parts for a in part)
    return Command(name, args, cwd, items, scratch / "cache" / name, cold, ok_codes)


@dataclass(frozen=True)
class Block:
    """Commands that are compared, run back to back, in reverse order every other time."""

    name: str
    commands: tuple[Command, ...]
    inner: int = 1  # times per round

    def order(self, turn: int) -> tuple[Command, ...]:
        return self.commands if turn % 2 == 0 else self.commands[::-1]


@dataclass(frozen=True)
class Run:
    wall: float  # seconds, perf_counter around Popen .. wait4
    cpu: float  # the child's user + system seconds (with those of the children it reaped)
    maxrss_kb: int  # the child's peak resident set size (ru_maxrss: KiB on Linux)
    session: float | None  # pytest's own "in X.XXs", if it printed one


@dataclass(frozen=True)
class Measure:
    """A figure computed per run of a block from two of its commands: A (the baseline) and B."""

    name: str
    block: str
    a: str
    b: str
    kind: str  # "b/a": B's wall over A's; "a/b": A's over B's; "rss": (B - A) peak RSS in KB per item
    items: int
    goal: float | None = None  # the median must be <= goal ("b/a") or >= goal ("a/b")

    def value(self, a: Run, b: Run) -> float:
        if self.kind == "b/a":
            return b.wall / a.wall
        if self.kind == "a/b":
            return a.wall / b.wall
        if self.kind == "rss":
            return (b.maxrss_kb - a.maxrss_kb) / self.items
        raise ValueError(self.kind)

    def verdict(self, median: float) -> str:
        if self.goal is None:
            return ""
        ok = median <= self.goal if self.kind == "b/a" else median >= self.goal
        return "PASS" if ok else "MISS"

    def goal_text(self) -> str:
        if self.goal is None:
            return ""
        return f"{'<=' if self.kind == 'b/a' else '>='} {self.goal:g}"


# ---------------------------------------------------------------- statistics


def paired(runs: dict[str, list[Run]], measure: Measure) -> list[float]:
    """The measure in each round: from A's and B's runs of THAT round (run i of A with run i of B)."""
    a, b = runs[measure.a], runs[measure.b]
    if len(a) != len(b):
        raise ValueError(f"{measure.name}: {len(a)} runs of {measure.a}, {len(b)} of {measure.b}")
    return [measure.value(x, y) for x, y in zip(a, b)]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


# ---------------------------------------------------------------- running


def bench_env(pycache: Path) -> dict[str, str]:
    """The caller's environment minus what changes what pytest loads, with bytecode cached in PYCACHE."""
    drop = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def session_seconds(stdout: str) -> float | None:
    """pytest's own session time from its last line, e.g. '123 passed in 0.45s'."""
    lines = stdout.strip().splitlines()
    match = SESSION.search(lines[-1]) if lines else None
    return float(match.group(1)) if match else None


def run(
    cmd: Command, env: dict[str, str], args: Sequence[str] | None = None, ok_codes: tuple[int, ...] | None = None
) -> tuple[Run, str]:
    """Run CMD (with ARGS instead of its own, if given) once; return its Run and its stdout."""
    if cmd.cold:
        shutil.rmtree(cmd.cache, ignore_errors=True)
    argv = cmd.argv(args)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cmd.cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode(errors="replace")
        if code not in (cmd.ok_codes if ok_codes is None else ok_codes):
            err.seek(0)
            stderr = err.read().decode(errors="replace")
            raise RuntimeError(f"{' '.join(argv)} (in {cmd.cwd}) exited {code}:\n{stdout[-2000:]}{stderr[-2000:]}")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, session_seconds(stdout)), stdout


def count_items(cmd: Command, env: dict[str, str]) -> int:
    """Items pytest collects for CMD's arguments (from 'N tests collected')."""
    _, out = run(cmd, env, args=[*cmd.args, *COLLECT], ok_codes=(0,))
    match = COLLECTED.search(out)
    if not match:
        raise RuntimeError(f"no 'N tests collected' line in:\n{out[-2000:]}")
    return int(match.group(1))


# ---------------------------------------------------------------- set-up


def suite_source() -> Path:
    """The suite installed with the measured code (conformance_suites), else this checkout's suites/."""
    spec = importlib.util.find_spec("conformance_suites")  # finds the package without importing it
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location, "flags.toml").is_file():
            return Path(location)
    return REPO / "suites"


def write_project(root: Path, ini: str = "", tests: int | None = None) -> Path:
    """A scratch project with its own pytest.ini (so it is the rootdir)."""
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n" + ini, encoding="utf-8")
    if tests is not None:
        (root / "test_floor.py").write_text(FLOOR_TEST.format(n=tests), encoding="utf-8")
    return root


def write_work_floor(root: Path, suite: Path, paths: Sequence[str], env: dict[str, str]) -> tuple[Path, int]:
    """A bare-pytest project running SUITE's vectors through the reference backend and the verdict."""
    write_project(root)
    (root / "test_work.py").write_text(WORK_FLOOR_TEST, encoding="utf-8")
    argv = [sys.executable, "-c", WORK_CASES, *(str(suite / p) for p in paths)]
    out = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, check=True)
    return root, int(out.stdout.split()[-1])


def write_suite_project(root: Path, source: Path, copies: int) -> tuple[str, ...]:
    """SOURCE copied COPIES times under one suite root: ROOT/s/flags.toml and ROOT/s/c0 .. c{COPIES-1}.

    A vector's id is its file's path under the suite root (the directory of
    its flags.toml) and must be unique in a run: the copies share one
    registry and differ by directory. Return the paths to give pytest.
    """
    write_project(root, "conformance_suites = s\n")
    (root / "s").mkdir()
    shutil.copy2(source / "flags.toml", root / "s" / "flags.toml")
    for i in range(copies):
        shutil.copytree(
            source, root / "s" / f"c{i}", ignore=lambda d, names: ["flags.toml"] if Path(d) == source else []
        )
    return ("s",)


def scale_blocks(
    label: str,
    project: Path,
    paths: Sequence[str],
    floors: tuple[Path, Path],
    items: int,
    scratch: Path,
    inner: int = 1,
) -> tuple[list[Block], list[Measure]]:
    """The blocks and measures of one suite size, LABEL ("1x", "10x"); FLOORS: trivial, work."""
    floor, work = floors

    def floor_cmd(name: str, *extra: Sequence[str]) -> Command:
        return command(name, (["test_floor.py"], NO_PLUGIN, SERIAL, *extra), floor, items, scratch)

    def suite_cmd(name: str, *extra: Sequence[str], cold: bool = False) -> Command:
        return command(name, (paths, BACKEND, *extra), project, items, scratch, cold=cold)

    # each run of the suite is next to a floor, the warm run also next to -n auto
    runs = Block(
        f"run-{label}",
        (
            floor_cmd(f"floor-{label}"),
            suite_cmd(f"suite-{label}-cold", SERIAL, cold=True),
            command(f"work-{label}", (["test_work.py"], NO_PLUGIN, SERIAL), work, items, scratch),
            suite_cmd(f"suite-{label}", SERIAL),
            suite_cmd(f"suite-{label}-nauto", NAUTO),
        ),
        inner,
    )
    collect = Block(
        f"collect-{label}",
        (
            suite_cmd(f"collect-{label}-cold", SERIAL, COLLECT, cold=True),
            floor_cmd(f"floor-{label}-collect", COLLECT),
            suite_cmd(f"collect-{label}-warm", SERIAL, COLLECT),
        ),
        inner,
    )
    floor_, floor_collect, work_ = f"floor-{label}", f"floor-{label}-collect", f"work-{label}"
    measures = [
        Measure(f"runner, warm, {label}", runs.name, work_, f"suite-{label}", "b/a", items, GOAL_WARM),
        Measure(f"runner, cold, {label}", runs.name, work_, f"suite-{label}-cold", "b/a", items, GOAL_COLD),
        Measure(f"items' own work, {label}", runs.name, floor_, work_, "b/a", items),
        Measure(f"per item, warm, {label}", runs.name, floor_, f"suite-{label}", "b/a", items),
        Measure(f"per item, cold, {label}", runs.name, floor_, f"suite-{label}-cold", "b/a", items),
        Measure(f"collect-only, cold, {label}", collect.name, floor_collect, f"collect-{label}-cold", "b/a", items),
        Measure(f"collect-only, warm, {label}", collect.name, floor_collect, f"collect-{label}-warm", "b/a", items),
        Measure(
            f"-n auto speed-up, {label}",
            runs.name,
            f"suite-{label}",
            f"suite-{label}-nauto",
            "a/b",
            items,
            GOAL_NAUTO_1X if label == "1x" else GOAL_NAUTO_KX,
        ),
        Measure(f"memory, KB/item, {label}", runs.name, floor_, f"suite-{label}", "rss", items),
        Measure(f"memory, KB/item, cold, {label}", runs.name, floor_, f"suite-{label}-cold", "rss", items),
    ]
    return [runs, collect], measures


def startup_block(empty: Path, scratch: Path, inner: int = 1) -> tuple[Block, list[Measure]]:
    """pytest in a project without tests: bare, with the conformance plugin, and with hypothesis's too."""

    def startup(name: str, *parts: Sequence[str]) -> Command:
        return command(name, parts, empty, 0, scratch, ok_codes=(NO_TESTS,))

    block = Block(
        "startup",
        (
            startup("startup-bare", NO_PLUGIN, SERIAL),
            startup("startup-plugin", BACKEND, SERIAL),
            startup("startup-plugin-hypothesis", BACKEND, ("-p", "no:xdist", "-q")),
        ),
        inner,
    )
    return block, [
        Measure("start-up, + conformance plugin", block.name, "startup-bare", "startup-plugin", "b/a", 0),
        Measure("start-up, + hypothesis plugin", block.name, "startup-plugin", "startup-plugin-hypothesis", "b/a", 0),
    ]


def build(
    scratch: Path, source: Path, scale: int, env: dict[str, str], inner: dict[str, int]
) -> tuple[list[Block], list[Measure]]:
    """Write the scratch projects, check their item counts; return every block and measure."""
    blocks: list[Block] = []
    measures: list[Measure] = []
    n = 0
    for label, copies in (("1x", 1), (f"{scale}x", scale)):
        project = scratch / f"suite-{label}"
        paths = write_suite_project(project, source, copies)
        got = count_items(command(f"count-{label}", (paths, BACKEND, SERIAL), project, 0, scratch, cold=True), env)
        n = n or got
        if got != copies * n:
            raise RuntimeError(f"the {label} project collected {got} items, expected {copies} x {n}")
        times = inner["1x" if copies == 1 else "Kx"]
        if not times:
            continue
        floor = write_project(scratch / f"floor-{label}", tests=got)
        work, cases = write_work_floor(scratch / f"work-{label}", project, paths, env)
        if cases != got:
            raise RuntimeError(f"the {label} work floor has {cases} items, the suite run {got}")
        more_blocks, more_measures = scale_blocks(label, project, paths, (floor, work), got, scratch, times)
        blocks += more_blocks
        measures += more_measures
    startup, startup_measures = startup_block(write_project(scratch / "empty"), scratch, inner["startup"])
    return [startup, *blocks], [*measures, *startup_measures]


# ---------------------------------------------------------------- the code measured, the machine


def package_dirs() -> list[Path]:
    """Where this interpreter imports the measured packages from (found, not imported)."""
    dirs = []
    for name in ("conformance", "conformance_reference"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            dirs.append(Path(spec.origin).parent)
    return dirs


def editable_packages(checkout: Path) -> dict[str, Path]:
    """Top-level packages installed in editable mode from CHECKOUT: name -> source directory.

    setuptools' editable installs put a finder on sys.meta_path whose
    module holds MAPPING, {package: directory}.
    """
    found: dict[str, Path] = {}
    for finder in sys.meta_path:
        mapping = getattr(sys.modules.get(getattr(finder, "__module__", "")), "MAPPING", None)
        if isinstance(mapping, dict):
            found.update({name: Path(path) for name, path in mapping.items() if Path(path).is_relative_to(checkout)})
    return found


def take_snapshot(packages: dict[str, Path], dest: Path, env: dict[str, str]) -> dict[str, str]:
    """Copy PACKAGES into DEST and put DEST first on the children's PYTHONPATH; check they import from it.

    On sys.path, DEST comes before the editable finders, so every child
    imports the code as it was when the benchmark began, however the
    checkout changes meanwhile. Return where a child imports each package from.
    """
    for name, source in packages.items():
        shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    env["PYTHONPATH"] = os.pathsep.join([str(dest), *filter(None, [env.get("PYTHONPATH")])])
    probe = "import importlib.util as u, sys; print(*(u.find_spec(n).origin for n in sys.argv[1:]), sep='\\n')"
    names = sorted(n for n in packages if (dest / n / "__init__.py").is_file())
    # from DEST's parent, as the runs go from their projects: not from wherever this script was started
    argv = [sys.executable, "-c", probe, *names]
    out = subprocess.run(argv, cwd=dest.parent, env=env, capture_output=True, text=True, check=True)
    found = dict(zip(names, out.stdout.split()))
    stray = {n: origin for n, origin in found.items() if not Path(origin).is_relative_to(dest)}
    if stray:
        raise RuntimeError(f"children import these packages from outside the snapshot: {stray}")
    return found


def fingerprint(dirs: Sequence[Path]) -> str:
    """A digest of the *.py files under DIRS, by their paths within each: a copy has the same."""
    digest = hashlib.sha256()
    for root in dirs:
        for path in sorted(root.rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def git_state(where: Path) -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "subject": git("log", "-1", "--format=%s"),
        "dirty": git("status", "--porcelain", "--untracked-files=no").splitlines(),
    }


def measured_code(dirs: Sequence[Path]) -> dict[str, Any]:
    checkout = dirs[0].parent if dirs else REPO
    return {
        "packages": [str(d) for d in dirs],
        "checkout": str(checkout),
        "fingerprint": fingerprint(dirs),
        **git_state(checkout),
    }


def machine() -> dict[str, Any]:
    from importlib import metadata

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "executable": sys.executable,
        **{dist: version(dist) for dist in ("pytest", "pluggy", "pytest-xdist", "hypothesis")},
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- the benchmark


def all_commands(blocks: Sequence[Block]) -> list[Command]:
    return [c for b in blocks for c in b.commands]


def measure_rounds(
    blocks: Sequence[Block], repeat: int, env: dict[str, str], check: Callable[[], str]
) -> tuple[dict[str, list[Run]], list[dict[str, Any]]]:
    """One unmeasured warm-up round, then REPEAT rounds; return every command's runs and notes on the rounds."""
    start = time.perf_counter()
    for cmd in all_commands(blocks):
        if not cmd.cold:
            run(cmd, env)
    print(f"warm-up done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    runs: dict[str, list[Run]] = {c.name: [] for c in all_commands(blocks)}
    notes = []
    for round_ in range(repeat):
        began = time.perf_counter()
        notes.append({"round": round_ + 1, "loadavg": os.getloadavg(), "code": check()})
        for block in blocks:
            for turn in range(block.inner):
                for cmd in block.order(round_ * block.inner + turn):
                    runs[cmd.name].append(run(cmd, env)[0])
        notes[-1]["seconds"] = time.perf_counter() - began
        print(
            f"round {round_ + 1}/{repeat} done in {notes[-1]['seconds']:.0f} s (load {os.getloadavg()[0]:.2f})",
            file=sys.stderr,
        )
    notes.append({"round": "end", "loadavg": os.getloadavg(), "code": check()})
    return runs, notes


def results_of(measures: Sequence[Measure], runs: dict[str, list[Run]]) -> list[dict[str, Any]]:
    rows = []
    for m in measures:
        values = paired(runs, m)
        stats = summary(values)
        pairs = list(zip(runs[m.a], runs[m.b]))
        cpu = [y.cpu / x.cpu if m.kind == "b/a" else x.cpu / y.cpu for x, y in pairs]
        rows.append(
            {
                "measure": m.name,
                "block": m.block,
                "a": m.a,
                "b": m.b,
                "kind": m.kind,
                "items": m.items,
                "samples": len(values),
                "per_round": values,
                **stats,
                "goal": m.goal_text() or None,
                "verdict": m.verdict(stats["median"]) or None,
                "a_median_wall_s": statistics.median(x.wall for x, _ in pairs),
                "b_median_wall_s": statistics.median(y.wall for _, y in pairs),
                "a_median_maxrss_kb": statistics.median(x.maxrss_kb for x, _ in pairs),
                "b_median_maxrss_kb": statistics.median(y.maxrss_kb for _, y in pairs),
                "cpu_ratio_median": statistics.median(cpu) if m.kind != "rss" else None,
                # B - A wall in each round, per item (in all, for the start-up measures)
                "extra_ms_per_item_median": statistics.median(
                    1e3 * (y.wall - x.wall) / (m.items or 1) for x, y in pairs
                ),
            }
        )
    return rows


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print(
        f"{'measure':<32} {'items':>6} {'n':>2} {'A s':>7} {'B s':>7} {'min':>7} {'median':>7} {'max':>7} "
        f"{'cpu':>6} {'+ms/item':>8} {'goal':>7} verdict"
    )
    for r in rows:
        head = f"{r['measure']:<32} {r['items'] or '':>6} {r['samples']:>2}"
        if r["kind"] == "rss":
            print(
                f"{head} {r['a_median_maxrss_kb'] / 1024:>6.0f}M {r['b_median_maxrss_kb'] / 1024:>6.0f}M "
                f"{r['min']:>7.1f} {r['median']:>7.1f} {r['max']:>7.1f}"
            )
            continue
        print(
            f"{head} {r['a_median_wall_s']:>7.3f} {r['b_median_wall_s']:>7.3f} {r['min']:>6.2f}x "
            f"{r['median']:>6.2f}x {r['max']:>6.2f}x {r['cpu_ratio_median']:>5.2f}x "
            f"{r['extra_ms_per_item_median']:>8.3f} {r['goal'] or '':>7} {r['verdict'] or ''}"
        )
    print(
        "n: samples (paired runs); A, B: median wall s (peak RSS for memory) of the baseline and the measured"
        " command; min/median/max: of the per-round B/A (A/B for -n auto; KB per item for memory); cpu: median"
        " per-round ratio of CPU s; +ms/item: median per-round B - A wall per item (in all for start-up)."
        " Verdicts are on the median."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat", type=int, help=f"measured rounds (default {DEFAULT_REPEAT}; --quick: {QUICK_REPEAT})"
    )
    parser.add_argument(
        "--scale",
        type=int,
        help=f"copies of the suite in the scaled runs (default {DEFAULT_SCALE}; --quick: {QUICK_SCALE})",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test of the script: fewer rounds, a smaller scale, no 1x blocks"
    )
    parser.add_argument("--suites", type=Path, help="the suite directory to copy (default: the installed suite)")
    parser.add_argument(
        "--live",
        action="store_true",
        help="run the checkout's code as it is at each run, rather than a copy taken when the benchmark starts",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"the JSON results (default {RESULTS})")
    args = parser.parse_args(argv)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    scale = args.scale or (QUICK_SCALE if args.quick else DEFAULT_SCALE)
    inner = QUICK_INNER if args.quick else INNER
    if repeat < 1 or scale < 2:
        parser.error("--repeat must be at least 1 and --scale at least 2")
    began, load_before = time.time(), uptime()
    dirs = package_dirs()
    code = measured_code(dirs)
    checkout = Path(code["checkout"])
    packages = {} if args.live else editable_packages(checkout)
    with tempfile.TemporaryDirectory(prefix="runner-overhead-") as tmp:
        scratch = Path(tmp)
        env = bench_env(scratch / "pycache")
        snapshot = take_snapshot(packages, scratch / "snapshot", env) if packages else None
        code["snapshot"] = snapshot  # None: the children import the checkout itself, as it is at each run
        if snapshot:
            code["snapshot_fingerprint"] = fingerprint(
                [Path(snapshot[n]).parent for n in ("conformance", "conformance_reference") if n in snapshot]
            )
        if args.suites is not None:
            source = args.suites
        elif packages.get("conformance_suites"):
            source = scratch / "snapshot" / "conformance_suites"
        else:
            source = suite_source()
        blocks, measures = build(scratch, source, scale, env, inner)
        runs, notes = measure_rounds(blocks, repeat, env, lambda: fingerprint(dirs))
        commands = {
            c.name: {
                "argv": ["python", "-m", "pytest", *c.args, "-o", f"cache_dir=<scratch>/cache/{c.name}"],
                "cwd": f"<scratch>/{c.cwd.relative_to(scratch)}",
                "items": c.items,
                "cold": c.cold,
            }
            for c in all_commands(blocks)
        }
    rows = results_of(measures, runs)
    # a child's ru_maxrss is at least this process's peak when it was started: a figure not above it says nothing
    own_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for row in rows:
        if row["kind"] == "rss":
            row["above_parent_rss"] = min(r.maxrss_kb for n in (row["a"], row["b"]) for r in runs[n]) > own_rss
    untrusted = [row["measure"] for row in rows if row.get("above_parent_rss") is False]
    changed = len({note["code"] for note in notes} | {code["fingerprint"]}) > 1
    mixed = changed and not code["snapshot"]
    results = {
        "command": " ".join(["python bench/runner_overhead.py", *(sys.argv[1:] if argv is None else argv)]),
        "repeat": repeat,
        "scale": scale,
        "inner": inner,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(began)),
        "duration_s": time.time() - began,
        "uptime_before": load_before,
        "uptime_after": uptime(),
        "machine": machine(),
        "measured_code": code,
        "measured_code_after": measured_code(dirs),
        "checkout_changed_during_run": changed,
        "figures_mix_code_versions": mixed,
        "bench_code": git_state(REPO),
        "suite_source": str(source),
        "rounds": notes,
        "own_maxrss_kb": own_rss,
        "commands": commands,
        "measures": rows,
        "runs": {name: [vars(r) for r in rs] for name, rs in runs.items()},
    }
    dirty = f" (dirty: {', '.join(code['dirty'])})" if code["dirty"] else ""
    print(
        f"{results['command']}: {repeat} rounds, scale {scale}, {results['duration_s']:.0f} s\n"
        f"code measured: {code['commit'][:10]}{dirty} in {code['checkout']}"
        f"{' (a copy taken at the start)' if code['snapshot'] else ' (live)'}\n"
        f"before: {load_before}\nafter:  {results['uptime_after']}"
    )
    print_table(rows)
    if mixed:
        print("WARNING: the measured code changed during the run: these figures mix versions", file=sys.stderr)
    elif changed:
        print("note: the checkout changed during the run; the copy measured did not")
    if untrusted:
        print(
            f"WARNING: peak RSS not above this process's ({own_rss} KB), so not measured: {untrusted}", file=sys.stderr
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as err:  # a pytest run failed or printed something unexpected
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
