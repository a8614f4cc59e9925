"""Per-item cost of `pytest` on the conformance suite against bare pytest.

One run measures, interleaved so the commands share the machine's noise:

* suite-1x   the suite on the reference backend, from the repository root;
* floor-1x   bare pytest (conformance plugin disabled) on as many trivial
             parametrized items as suite-1x has;
* suite-Kx   the suite copied into K sibling directories of a scratch project;
* suite-Kx-cold  the same with --conformance-no-cache: every file parsed and
             validated afresh, as on a first run;
* floor-Kx   bare pytest on as many trivial items as suite-Kx has;
* startup    bare pytest on a project without tests (interpreter + pytest);
* startup-plugin  the same with the conformance plugin and reference backend
             loaded, to separate the plugin's fixed cost from its per-item cost.

Each run records the wall time of the subprocess and pytest's own session
time (the "in X.XXs" of its last line). The 1.3x target applies to the
per-item wall-time cost at scale (suite-Kx against floor-Kx), with the
loaded-vector cache warm (it is filled by the warm-up round, as by any
earlier run); the cold figure is reported beside it. Every command uses
its own pytest cache directory in the scratch area.

Subprocesses cache bytecode under a scratch PYTHONPYCACHEPREFIX (filled by
an unmeasured warm-up round) even when PYTHONDONTWRITEBYTECODE is set, so
neither side pays for compiling modules on every run and nothing is
written into the repository.

    python bench/runner_overhead.py [--repeat 7] [--scale 10]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "runner_overhead.json"
TARGET = 1.3
COMMON = ["-p", "no:xdist", "-q"]
SUITE_ARGS = ["--backend", "reference"]
FLOOR_ARGS = ["-p", "no:conformance"]
NO_TESTS = 5  # pytest's exit code when nothing was collected
COLLECTED = re.compile(r"(\d+) tests? collected")
SESSION = re.compile(r" in (\d+(?:\.\d+)?)s\b")
FLOOR_TEST = '''import pytest


@pytest.mark.parametrize("i", range({n}))
def test_trivial(i):
    pass
'''


@dataclass
class Command:
    """One pytest invocation and the timings of its measured runs."""

    name: str
    args: list[str]
    cwd: Path
    items: int
    ok_codes: tuple[int, ...] = (0,)
    wall: list[float] = field(default_factory=list)
    session: list[float] = field(default_factory=list)

    def median_wall(self) -> float:
        return statistics.median(self.wall)

    def median_session(self) -> float:
        return statistics.median(self.session)


def bench_env(pycache: Path) -> dict[str, str]:
    """The caller's environment minus what changes what pytest loads, with bytecode cached in PYCACHE."""
    drop = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def pytest_run(args: list[str], cwd: Path, ok_codes: tuple[int, ...], env: dict[str, str]) -> tuple[float, str]:
    """Run `python -m pytest ARGS` in CWD; return (wall seconds, stdout)."""
    argv = [sys.executable, "-m", "pytest", *args]
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in ok_codes:
        raise RuntimeError(f"{' '.join(argv)} (in {cwd}) exited {proc.returncode}:\n"
                           f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return wall, proc.stdout


def count_items(args: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Items pytest collects for ARGS (parsed from 'N tests collected')."""
    _, out = pytest_run([*args, "--collect-only", *COMMON], cwd, (0,), env)
    match = COLLECTED.search(out)
    if not match:
        raise RuntimeError(f"no 'N tests collected' line in:\n{out[-2000:]}")
    return int(match.group(1))


def session_seconds(stdout: str) -> float:
    """pytest's own session time from its last line, e.g. '123 passed in 0.45s'."""
    last = stdout.strip().splitlines()[-1]
    match = SESSION.search(last)
    if not match:
        raise RuntimeError(f"no session time in pytest's last line: {last!r}")
    return float(match.group(1))


def write_project(root: Path, ini: str = "", tests: int | None = None) -> Path:
    """A scratch project with its own pytest.ini (so it is the rootdir)."""
    root.mkdir(parents=True)
    (root / "pytest.ini").write_text("[pytest]\n" + ini, encoding="utf-8")
    if tests is not None:
        (root / "test_floor.py").write_text(FLOOR_TEST.format(n=tests), encoding="utf-8")
    return root


def write_scaled_suite(root: Path, scale: int) -> list[str]:
    """Copy suites/ (flags.toml included) into s0..s{K-1}; return the directory names."""
    names = [f"s{i}" for i in range(scale)]
    ini = "conformance_suites =\n" + "".join(f"    {n}\n" for n in names)  # linelist: one per line
    write_project(root, ini)
    for name in names:
        shutil.copytree(REPO / "suites", root / name)
    return names


def build_commands(tmp: Path, scale: int, env: dict[str, str]) -> list[Command]:
    suite_1x = ["suites", *SUITE_ARGS, *COMMON]
    n = count_items(suite_1x[:-len(COMMON)], REPO, env)
    names = write_scaled_suite(tmp / "scaled", scale)
    suite_kx = [*names, *SUITE_ARGS, *COMMON]
    nk = count_items(suite_kx[:-len(COMMON)], tmp / "scaled", env)
    if nk != scale * n:
        raise RuntimeError(f"scaled suite collected {nk} items, expected {scale} x {n}")
    floor = ["test_floor.py", *FLOOR_ARGS, *COMMON]
    empty = write_project(tmp / "empty")
    commands = [
        Command("suite-1x", suite_1x, REPO, n),
        Command("floor-1x", floor, write_project(tmp / "floor1", tests=n), n),
        Command(f"suite-{scale}x", suite_kx, tmp / "scaled", nk),
        Command(f"floor-{scale}x", floor, write_project(tmp / "floork", tests=nk), nk),
        Command("startup", [*FLOOR_ARGS, *COMMON], empty, 0, (NO_TESTS,)),
        Command("startup-plugin", [*SUITE_ARGS, *COMMON], empty, 0, (NO_TESTS,)),
        Command(f"suite-{scale}x-cold", [*suite_kx, "--conformance-no-cache"], tmp / "scaled", nk),
    ]
    for command in commands:  # a private pytest cache per command, outside the repository
        command.args += ["-o", f"cache_dir={tmp / 'cache' / command.name}"]
    return commands


def measure(commands: list[Command], repeat: int, env: dict[str, str]) -> None:
    """One unmeasured warm-up round, then REPEAT interleaved rounds."""
    for command in commands:
        pytest_run(command.args, command.cwd, command.ok_codes, env)
    for round_ in range(repeat):
        for command in commands:
            wall, out = pytest_run(command.args, command.cwd, command.ok_codes, env)
            command.wall.append(wall)
            command.session.append(session_seconds(out))
        print(f"round {round_ + 1}/{repeat} done", file=sys.stderr)


def compare(suite: Command, floor: Command, startup: Command) -> dict[str, Any]:
    """Per-item costs and suite/floor ratios for one scale."""
    start = startup.median_wall()
    row: dict[str, Any] = {"items": suite.items}
    for cmd, key in ((suite, "suite"), (floor, "floor")):
        row[key] = {
            "median_wall_s": cmd.median_wall(), "median_session_s": cmd.median_session(),
            "per_item_wall_ms": 1e3 * cmd.median_wall() / cmd.items,
            "per_item_session_ms": 1e3 * cmd.median_session() / cmd.items,
            "marginal_per_item_ms": 1e3 * (cmd.median_wall() - start) / cmd.items,
            "wall_s": cmd.wall, "session_s": cmd.session,
        }
    for measure_ in ("per_item_wall_ms", "per_item_session_ms", "marginal_per_item_ms"):
        row[f"ratio_{measure_}"] = row["suite"][measure_] / row["floor"][measure_]
    return row


def machine() -> dict[str, Any]:
    import pytest  # the same installation the subprocesses use

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "python": platform.python_version(), "pytest": pytest.__version__,
            "platform": platform.platform(), "executable": sys.executable,
            "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def print_table(results: dict[str, Any]) -> None:
    print(f"{'run':<10} {'items':>6} {'wall s':>8} {'session s':>10} {'ms/item wall':>13} "
          f"{'ms/item session':>16} {'ms/item marginal':>17}")
    for scale, row in results["scales"].items():
        for key in ("suite", "floor"):
            r = row[key]
            print(f"{key + '-' + scale:<10} {row['items']:>6} {r['median_wall_s']:>8.3f} "
                  f"{r['median_session_s']:>10.3f} {r['per_item_wall_ms']:>13.3f} "
                  f"{r['per_item_session_ms']:>16.3f} {r['marginal_per_item_ms']:>17.3f}")
        print(f"{'ratio-' + scale:<10} {'':>6} {'':>8} {'':>10} {row['ratio_per_item_wall_ms']:>12.2f}x "
              f"{row['ratio_per_item_session_ms']:>15.2f}x {row['ratio_marginal_per_item_ms']:>16.2f}x")
    for name, s in results["startup"].items():
        print(f"{name} (0 items): wall {s['median_wall_s']:.3f} s")
    v = results["verdict"]
    print(f"target: suite/floor per-item wall cost at {v['scale']} <= {TARGET}x: "
          f"{v['ratio']:.2f}x -> {'PASS' if v['pass'] else 'MISS'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="measured runs per command (default 7)")
    parser.add_argument("--scale", type=int, default=10, help="copies of suites/ in the scaled run (default 10)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.scale < 1:
        parser.error("--repeat and --scale must be at least 1")
    with tempfile.TemporaryDirectory(prefix="runner-overhead-") as tmp:
        env = bench_env(Path(tmp) / "pycache")
        commands = build_commands(Path(tmp), args.scale, env)
        measure(commands, args.repeat, env)
    suite_1x, floor_1x, suite_kx, floor_kx, startup, startup_plugin, suite_cold = commands
    scale = f"{args.scale}x"
    scales = {"1x": compare(suite_1x, floor_1x, startup), scale: compare(suite_kx, floor_kx, startup),
              f"{scale}-cold": compare(suite_cold, floor_kx, startup)}
    ratio = scales[scale]["ratio_per_item_wall_ms"]
    results = {
        "command": f"python bench/runner_overhead.py --repeat {args.repeat} --scale {args.scale}",
        "machine": machine(), "repeat": args.repeat, "scale": args.scale,
        "commands": {c.name: {"argv": ["python", "-m", "pytest", *c.args], "items": c.items} for c in commands},
        "startup": {c.name: {"median_wall_s": c.median_wall(), "wall_s": c.wall} for c in (startup, startup_plugin)},
        "scales": scales,
        "verdict": {"measure": "suite/floor per-item wall time", "scale": scale, "target": TARGET,
                    "ratio": ratio, "pass": ratio <= TARGET},
    }
    print_table(results)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"results: {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as err:  # a pytest run failed or printed something unexpected
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
