"""What running a backend in a child process (conformance.isolation) costs per item.

Every (vector, profile) of `suites/` (loaded with conformance.load.load_file)
runs on the `reference` backend two ways, in paired rounds A B A B ...:

* A, **in-process**: `ReferenceBackend().run(vector, profile)`;
* B, **isolated**: `IsolatedBackend("reference", Limits(60)).run(vector, profile)`,
  one child for the whole run (as in a session), started before the rounds.

Each item is timed on its own (`time.perf_counter()` around the call). Per
item, the median over the rounds is taken; the table shows the min, median,
90th percentile and max of those across items for A, B and the paired
difference B - A, and the mean per item (a round's total / items). A
warm-up round of each arm runs first and is not counted. The child's
start-up (constructor to `info`) is timed separately. As in the runner,
the loaded vectors are frozen out of the cyclic GC (`gc.freeze()`).

    python bench/isolation_overhead.py [--pairs 5] [--starts 5]

Writes bench/results/isolation_overhead.json and prints a table.
"""
from __future__ import annotations

import argparse
import gc
import json
import pickle
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

from conformance.isolation import IsolatedBackend, Limits
from conformance.load import load_file
from conformance.model import Profile, Vector
from conformance_reference.plugin import ReferenceBackend

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "isolation_overhead.json"
Item = tuple[Vector, Profile]


def load_items() -> list[Item]:
    paths = [p for p in sorted((REPO / "suites").rglob("*.toml")) if p.name != "flags.toml"]
    return [(v, p) for path in paths for v in load_file(path).vectors for p in sorted(v.profiles)]


def one_round(run: Callable[[Vector, Profile], object], items: list[Item]) -> list[float]:
    times = []
    for vector, profile in items:
        start = time.perf_counter()
        run(vector, profile)
        times.append(time.perf_counter() - start)
    return times


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(per_item: list[float], round_totals: list[float], n: int) -> dict[str, float]:
    return {"min": min(per_item), "median": statistics.median(per_item), "p90": quantile(per_item, 0.9),
            "max": max(per_item), "mean": statistics.median(round_totals) / n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="A B rounds to measure (default 5, at least 5)")
    parser.add_argument("--starts", type=int, default=5, help="child start-ups to time (default 5)")
    args = parser.parse_args()
    if args.pairs < 5:
        parser.error("--pairs must be at least 5")

    items = load_items()
    gc.collect()
    gc.freeze()
    sizes = [len(pickle.dumps(item, pickle.HIGHEST_PROTOCOL)) for item in items]

    starts = []
    for _ in range(args.starts):
        begin = time.perf_counter()
        IsolatedBackend("reference", Limits(60)).close()
        starts.append(time.perf_counter() - begin)

    in_process = ReferenceBackend()
    isolated = IsolatedBackend("reference", Limits(60))
    arms = {"in-process": in_process.run, "isolated": isolated.run}
    for run in arms.values():
        one_round(run, items)  # warm-up
    rounds: dict[str, list[list[float]]] = {name: [] for name in arms}
    for _ in range(args.pairs):
        for name, run in arms.items():
            rounds[name].append(one_round(run, items))
    assert isolated.restarts == 0
    isolated.close()

    n = len(items)
    per_item = {name: [statistics.median(r[i] for r in rs) for i in range(n)] for name, rs in rounds.items()}
    totals = {name: [sum(r) for r in rs] for name, rs in rounds.items()}
    diff = [b - a for a, b in zip(per_item["in-process"], per_item["isolated"])]
    rows = {name: summary(per_item[name], totals[name], n) for name in arms}
    rows["difference"] = summary(diff, [b - a for a, b in zip(totals["in-process"], totals["isolated"])], n)
    small = [i for i in range(n) if sizes[i] < 64 * 1024]
    rows["difference, vectors < 64 KiB"] = summary([diff[i] for i in small], [sum(diff[i] for i in small)], len(small))

    print(f"{n} items ({len(small)} with a pickled vector under 64 KiB; largest {max(sizes) / 2**20:.1f} MiB), "
          f"{args.pairs} pairs of rounds; per item, the median over the rounds, in microseconds")
    print(f"{'':<30} {'min':>8} {'median':>8} {'p90':>8} {'max':>10} {'mean':>8}")
    for name, row in rows.items():
        print(f"{name:<30} " + " ".join(f"{row[k] * 1e6:>{10 if k == 'max' else 8}.1f}"
                                        for k in ("min", "median", "p90", "max", "mean")))
    print(f"child start-up: median {statistics.median(starts) * 1e3:.1f} ms "
          f"(min {min(starts) * 1e3:.1f}, max {max(starts) * 1e3:.1f}) over {len(starts)}")

    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({
        "python": sys.version.split()[0], "machine": platform.machine(), "items": n, "pairs": args.pairs,
        "summary_us": {name: {k: v * 1e6 for k, v in row.items()} for name, row in rows.items()},
        "start_ms": [s * 1e3 for s in starts], "round_totals_s": totals,
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
