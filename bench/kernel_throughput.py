"""Throughput of the `kernel` backend: vectors per second, where the time goes.

Two versions of the backend (`backends/kernel`) are measured against each
other in paired rounds, A B A B ..., so that both see the same machine
noise: A is the backend as of a git revision (`--baseline`, default the
merge base with `main`), B is the working tree. Everything else (the
loader, the pytest plugin, the suites) is this checkout's for both. Each
arm runs with `conformance_kernel` pointed at its own copy of the package.

Per round and arm:

* **in-process**: a child process loads every vector of `suites/` this
  host can run (mainline, requirements met), runs each once to warm up,
  then `--passes` passes of `KernelBackend().run(vector, MAINLINE)` over
  all of them: vectors/s of each pass. Then one more pass with every phase
  timed (wrappers around the functions named below; exclusive time, so a
  nested phase is not counted twice): milliseconds per vector.
* **per-process fixed costs** in the same child: importing the backend,
  constructing it (the capability probe, which creates throwaway VMs, and
  whatever the version sets up per process), the CPUID table, the tracefs
  instance (only on a TDP MMU host with tracefs).
* **whole process, serial**: `python -m pytest suites --backend kernel
  -p no:xdist -q` as a subprocess: wall time (interpreter start to exit)
  and the items that ran (passed, failed, xfailed, xpassed, errors; not
  skips); vectors/s = ran / wall.
* **whole process, -n auto** (with `--xdist`): the same with `-n auto`.

and once per round, the **floor**: the serial whole process with the
kernel backend's run() answered by the reference model (no KVM at all):
what the same session costs with a backend that takes no time.

Every pytest run uses a scratch cache directory (warm after an unmeasured
warm-up run of each arm, as every run after a developer's first) and
caches bytecode under a scratch PYTHONPYCACHEPREFIX.

    python bench/kernel_throughput.py [--rounds 5] [--passes 3] [--baseline REV] [--xdist]
    python bench/kernel_throughput.py --compare before.json after.json

`--compare` checks two `--conformance-json` files item by item (outcome,
detail, ignored observables) and exits non-zero on any difference.
Results go to bench/results/kernel_throughput.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "kernel_throughput.json"
PHASES = (  # (label, module, attribute): the functions timed in the phase pass
    ("plan", "layout", "plan"),
    ("vm_create", "vm", "LiveVm.__init__"),
    ("memslots", "vm", "LiveVm.add_region"),
    ("vcpu_create", "vm", "LiveVm.create_vcpu"),
    ("vcpu_setup", "vm", "LiveVm.start_guest"),
    ("page_tables", "guest", "build_system"),
    ("populate", "session", "Session.build"),
    ("steps", "actions", "perform"),
    ("observe", "observe", "observe"),
    ("teardown", "vm", "LiveVm.close"),
)
RAN = ("passed", "failed", "xfailed", "xpassed", "error", "errors")
COUNT = re.compile(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?|deselected)\b")
FLOOR_PLUGIN = '''"""Answer the kernel backend's run() with the reference model: the session's cost without KVM."""
import conformance_kernel.plugin as kernel
from conformance_reference.plugin import ReferenceBackend

_reference = ReferenceBackend()
kernel.KernelBackend.run = lambda self, vector, profile: _reference.run(vector, profile)
'''
CLOCK_PLUGIN = '''"""Where a pytest session's time goes: written to $KERNEL_THROUGHPUT_CLOCK at the end."""
import json, os, time

_marks = [("plugin import", time.perf_counter())]


def _mark(name):
    _marks.append((name, time.perf_counter()))


def pytest_configure(config):
    _mark("configure")


def pytest_collection_finish(session):
    _mark("collection")


def pytest_sessionfinish(session):
    _mark("run loop")


def pytest_unconfigure(config):
    _mark("session finish (terminal summary)")
    with open(os.environ["KERNEL_THROUGHPUT_CLOCK"], "w") as out:
        json.dump({b[0]: b[1] - a[1] for a, b in zip(_marks, _marks[1:])}, out)
'''


# ---------------------------------------------------------------- the child: in-process measurements

def worker(passes: int) -> dict[str, Any]:
    import gc
    import importlib

    started = time.perf_counter()
    import conformance.load  # noqa: F401  the framework's imports, timed apart from the backend's
    framework = time.perf_counter()
    from conformance_kernel import plugin, probe
    imported = time.perf_counter()
    from conformance.load import load_file
    from conformance.model import Profile

    probed: list[float] = []
    real_probe = probe.probe

    def timed_probe(path: str) -> Any:
        t = time.perf_counter()
        try:
            return real_probe(path)
        finally:
            probed.append(time.perf_counter() - t)

    probe.probe = timed_probe
    t = time.perf_counter()
    backend = plugin.KernelBackend()
    constructed = time.perf_counter() - t
    probe.probe = real_probe
    if backend.info.unavailable:
        raise SystemExit(f"backend kernel unavailable: {backend.info.unavailable}")
    t = time.perf_counter()
    backend.cpuid()
    cpuid = time.perf_counter() - t
    t = time.perf_counter()
    backend.trace()
    trace = time.perf_counter() - t

    paths = [p for p in sorted((REPO / "suites").rglob("*.toml")) if p.name != "flags.toml"]
    vectors = [v for p in paths for v in load_file(p).vectors if Profile.MAINLINE in v.profiles]
    vectors = [v for v in vectors if not backend.info.unmet(v.requires | {"profile:mainline"})]
    gc.collect()
    gc.freeze()  # as the runner does after collection
    for v in vectors:  # warm-up: import caches, the CPUID table, first-use allocations
        backend.run(v, Profile.MAINLINE)
    rates, cpu_rates = [], []
    for _ in range(passes):
        t, c = time.perf_counter(), time.process_time()
        for v in vectors:
            backend.run(v, Profile.MAINLINE)
        rates.append(len(vectors) / (time.perf_counter() - t))
        cpu_rates.append(len(vectors) / (time.process_time() - c))

    spent: dict[str, float] = dict.fromkeys([label for label, _, _ in PHASES], 0.0)
    stack: list[float] = []

    def wrap(label: str, owner: Any, name: str) -> None:
        inner = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            stack.append(0.0)
            try:
                return inner(*args, **kwargs)
            finally:
                took = time.perf_counter() - t0
                nested = stack.pop()
                spent[label] += took - nested
                if stack:
                    stack[-1] += took

        setattr(owner, name, timed)

    for label, module, attr in PHASES:
        owner: Any = importlib.import_module(f"conformance_kernel.{module}")
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        wrap(label, owner, name)
    phases: list[dict[str, float]] = []
    per = 1e3 / len(vectors)
    for _ in range(passes):
        for label in spent:
            spent[label] = 0.0
        t = time.perf_counter()
        for v in vectors:
            backend.run(v, Profile.MAINLINE)
        total = time.perf_counter() - t
        split = {label: s * per for label, s in spent.items()}
        split["other"] = (total - sum(spent.values())) * per
        split["total"] = total * per
        phases.append(split)
    return {
        "vectors": len(vectors), "rates": rates, "cpu_rates": cpu_rates, "phases_ms": phases,
        "fixed_ms": {"import framework": (framework - started) * 1e3, "import backend": (imported - framework) * 1e3,
                     "construct (probe and set-up)": constructed * 1e3, "of which probe": sum(probed) * 1e3,
                     "CPUID table": cpuid * 1e3, "tracefs instance": trace * 1e3},
        "observer": backend.info.where.get("observer", "?"),
    }


# ---------------------------------------------------------------- the parent

def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


def make_arms(scratch: Path, baseline: str) -> dict[str, Path]:
    """A PYTHONPATH directory per arm holding its `conformance_kernel` (and this checkout's reference)."""
    arms = {}
    base = scratch / "arm-base"
    (base / "src").mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", baseline, "backends/kernel"], cwd=REPO, check=True,
                             capture_output=True).stdout
    tar_path = scratch / "base.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(base / "src")
    (base / "conformance_kernel").symlink_to(base / "src" / "backends" / "kernel")
    arms["base"] = base
    new = scratch / "arm-new"
    new.mkdir()
    (new / "conformance_kernel").symlink_to(REPO / "backends" / "kernel")
    arms["new"] = new
    for arm in arms.values():
        (arm / "conformance_reference").symlink_to(REPO / "backends" / "reference")
    floor = scratch / "arm-floor"
    floor.mkdir()
    (floor / "kernel_throughput_floor.py").write_text(FLOOR_PLUGIN)
    (floor / "kernel_throughput_clock.py").write_text(CLOCK_PLUGIN)
    return arms


def arm_env(arm: Path, scratch: Path, extra: tuple[Path, ...] = ()) -> dict[str, str]:
    drop = ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTHONDONTWRITEBYTECODE",
            "KVM_CONFORMANCE_OBSERVER")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (arm, *extra, REPO))
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    return env


def check_arm(env: dict[str, str], expect: Path) -> None:
    where = subprocess.run([sys.executable, "-c", "import conformance_kernel, conformance; "
                            "print(conformance_kernel.__file__); print(conformance.__file__)"],
                           cwd=REPO, env=env, check=True, capture_output=True, text=True).stdout.split()
    if not where[0].startswith(str(expect)) or not where[1].startswith(str(REPO)):
        raise SystemExit(f"arm {expect}: conformance_kernel from {where[0]}, conformance from {where[1]}")


def run_inproc(env: dict[str, str], passes: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--worker", "--passes", str(passes)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"in-process worker exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_pytest(env: dict[str, str], scratch: Path, args: list[str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "pytest", "suites", "--backend", "kernel", "-q", "-o",
            f"cache_dir={scratch / 'pytest-cache'}", *args]
    clock = scratch / "clock.json"
    clock.unlink(missing_ok=True)
    env = dict(env, KERNEL_THROUGHPUT_CLOCK=str(clock))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {what.rstrip("s") if what.startswith("error") else what: int(n) for n, what in COUNT.findall(last)}
    if proc.returncode not in (0, 1) or not counts:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    ran = sum(counts.get(k, 0) for k in ("passed", "failed", "xfailed", "xpassed", "error"))
    split = json.loads(clock.read_text()) if clock.exists() else {}
    if split:
        split = {"start-up (interpreter, pytest, plugins)": wall - sum(split.values()), **split}
    return {"wall": wall, "cpu": cpu, "ran": ran, "counts": counts, "rate": ran / wall, "exit": proc.returncode,
            "clock": split}


BARE_TEST = """import pytest


@pytest.mark.parametrize("i", range({n}))
def test_trivial(i):
    pass
"""


def run_bare(env: dict[str, str], where: Path, items: int) -> dict[str, Any]:
    """Bare pytest (no conformance plugin) on ITEMS empty parametrised tests: a session that collects and
    reports as many items as the kernel run, with nothing to run. Its wall time bounds the whole process's
    rate from above, whatever the backend and the runner cost: ran / this."""
    where.mkdir(exist_ok=True)
    (where / "pytest.ini").write_text("[pytest]\n")
    (where / "test_bare.py").write_text(BARE_TEST.format(n=items))
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:conformance", "-p", "no:xdist", "-p",
            "no:hypothesispytest", "-p", "no:cacheprovider", "test_bare.py"]
    t = time.perf_counter()
    proc = subprocess.run(argv, cwd=where, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode:
        raise RuntimeError(f"bare pytest exited {proc.returncode}:\n{proc.stdout[-2000:]}")
    return {"wall": wall, "items": items}


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def fmt(s: dict[str, float], digits: int = 0) -> str:
    return f"{s['min']:.{digits}f} / {s['median']:.{digits}f} / {s['max']:.{digits}f}"


def compare(before: Path, after: Path) -> int:
    def items(path: Path) -> dict[str, tuple[Any, ...]]:
        data = json.loads(path.read_text())
        rows = data["results"] if isinstance(data, dict) else data  # results format 1, or the list before it
        return {r["nodeid"]: (r["outcome"], r["detail"], tuple(r.get("ignored", ()))) for r in rows}

    a, b = items(before), items(after)
    diffs = [(n, a.get(n), b.get(n)) for n in sorted(a.keys() | b.keys()) if a.get(n) != b.get(n)]
    outcomes: dict[str, int] = {}
    for outcome, _, _ in a.values():
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"{before}: {len(a)} items {outcomes}; {after}: {len(b)} items; {len(diffs)} differences")
    for n, x, y in diffs[:50]:
        print(f"  {n}\n    before: {x}\n    after:  {y}")
    return 1 if diffs else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds A B (default 5)")
    parser.add_argument("--passes", type=int, default=3, help="timed in-process passes per round (default 3)")
    parser.add_argument("--baseline", default=None, help="git revision of arm A (default: merge base with main)")
    parser.add_argument("--xdist", action="store_true", help="also time the whole process with -n auto")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"),
                        help="compare two --conformance-json files item by item")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.passes)))
        return 0
    if args.compare:
        return compare(*args.compare)

    baseline = args.baseline or git("merge-base", "HEAD", "main")
    scratch = Path(tempfile.mkdtemp(prefix="kernel-throughput-"))
    try:
        arms = make_arms(scratch, baseline)
        envs = {name: arm_env(path, scratch) for name, path in arms.items()}
        for name, path in arms.items():
            check_arm(envs[name], path)
        floor_env = arm_env(arms["new"], scratch, (scratch / "arm-floor",))
        serial = ["-p", "no:xdist"]
        floor_args = [*serial, "-p", "kernel_throughput_floor", "-p", "kernel_throughput_clock"]
        for name in arms:  # warm-up, not counted: the vector cache and bytecode
            warm = run_pytest(envs[name], scratch, serial)
        run_pytest(floor_env, scratch, floor_args)
        collected = sum(warm["counts"].values())
        run_bare(envs["new"], scratch / "bare", collected)
        data: dict[str, dict[str, list[Any]]] = {n: {"inproc": [], "serial": [], "xdist": []} for n in arms}
        data["floor"] = {"serial": [], "bare": []}
        for r in range(args.rounds):
            for name in arms:
                data[name]["inproc"].append(run_inproc(envs[name], args.passes))
                data[name]["serial"].append(run_pytest(envs[name], scratch, serial))
                if args.xdist:
                    data[name]["xdist"].append(run_pytest(envs[name], scratch, ["-n", "auto"]))
            data["floor"]["serial"].append(run_pytest(floor_env, scratch, floor_args))
            data["floor"]["bare"].append(run_bare(envs["new"], scratch / "bare", collected))
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {data[n]['inproc'][-1]['rates'][-1]:.0f}/s in-process, {data[n]['serial'][-1]['rate']:.1f}/s "
                "serial" for n in arms) + f", floor {data['floor']['serial'][-1]['rate']:.1f}/s", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    summary: dict[str, Any] = {}
    for name in arms:
        runs = data[name]
        s: dict[str, Any] = {
            "vectors": runs["inproc"][0]["vectors"],
            "in-process vectors/s": spread([x for run in runs["inproc"] for x in run["rates"]]),
            "in-process vectors/CPU-s": spread([x for run in runs["inproc"] for x in run["cpu_rates"]]),
            "serial vectors/s": spread([run["rate"] for run in runs["serial"]]),
            "serial wall s": spread([run["wall"] for run in runs["serial"]]),
            "serial CPU s": spread([run["cpu"] for run in runs["serial"]]),
            "serial items ran": sorted({run["ran"] for run in runs["serial"]}),
            "phases ms/vector": {k: spread([split[k] for run in runs["inproc"] for split in run["phases_ms"]])
                                 for k in runs["inproc"][0]["phases_ms"][0]},
            "fixed ms": {k: spread([run["fixed_ms"][k] for run in runs["inproc"]])
                         for k in runs["inproc"][0]["fixed_ms"]},
        }
        if args.xdist:
            s["-n auto vectors/s"] = spread([run["rate"] for run in runs["xdist"]])
            s["-n auto wall s"] = spread([run["wall"] for run in runs["xdist"]])
        summary[name] = s
    floor_runs = data["floor"]["serial"]
    summary["floor"] = {"serial vectors/s": spread([run["rate"] for run in floor_runs]),
                        "serial wall s": spread([run["wall"] for run in floor_runs]),
                        "serial CPU s": spread([run["cpu"] for run in floor_runs]),
                        "split s": {k: spread([run["clock"][k] for run in floor_runs]) for k in floor_runs[0]["clock"]},
                        "bare pytest wall s": spread([run["wall"] for run in data["floor"]["bare"]]),
                        "bare pytest items": collected,
                        "ran": floor_runs[0]["ran"],
                        "bound vectors/s": spread([floor_runs[0]["ran"] / run["wall"] for run in data["floor"]["bare"]])}

    print(f"\nbaseline {baseline[:12]} (A) against the working tree (B), {args.rounds} paired rounds; min / median / max")
    print(f"observer: {data['new']['inproc'][0]['observer']}; vectors run in-process: {summary['new']['vectors']}")
    rows = [("in-process vectors/s", 0), ("in-process vectors/CPU-s", 0), ("serial vectors/s", 1),
            ("serial wall s", 2), ("serial CPU s", 2)]
    if args.xdist:
        rows += [("-n auto vectors/s", 1), ("-n auto wall s", 2)]
    print(f"\n{'':28s} {'A: base':>26s} {'B: new':>26s}")
    for row, digits in rows:
        print(f"{row:28s} {fmt(summary['base'][row], digits):>26s} {fmt(summary['new'][row], digits):>26s}")
    print(f"{'serial items ran':28s} {summary['base']['serial items ran']!s:>26s} "
          f"{summary['new']['serial items ran']!s:>26s}")
    floor = summary["floor"]
    print(f"{'floor (no KVM) serial /s':28s} {fmt(floor['serial vectors/s'], 1):>26s}  "
          f"wall {fmt(floor['serial wall s'], 2)} s, CPU {fmt(floor['serial CPU s'], 2)} s")
    print("  the floor's session, s: " + "; ".join(f"{k} {fmt(v, 2)}" for k, v in floor["split s"].items()))
    print(f"bare pytest, {floor['bare pytest items']:,} empty items: wall {fmt(floor['bare pytest wall s'], 2)} s; "
          f"so at most {fmt(floor['bound vectors/s'], 1)} vectors/s for the {floor['ran']} that run")
    print(f"\nper-phase ms per vector (phase pass){'':4s} {'A: base':>20s} {'B: new':>20s}")
    for k in summary["base"]["phases ms/vector"]:
        print(f"  {k:36s} {fmt(summary['base']['phases ms/vector'][k], 3):>20s} "
              f"{fmt(summary['new']['phases ms/vector'][k], 3):>20s}")
    print(f"\nper-process fixed costs, ms{'':12s} {'A: base':>20s} {'B: new':>20s}")
    for k in summary["base"]["fixed ms"]:
        print(f"  {k:36s} {fmt(summary['base']['fixed ms'][k], 2):>20s} {fmt(summary['new']['fixed ms'][k], 2):>20s}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "baseline": baseline, "head": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain")),
        "rounds": args.rounds, "passes": args.passes, "machine": {
            "nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3]},
        "summary": summary, "raw": data}, indent=1))
    print(f"\nwrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
