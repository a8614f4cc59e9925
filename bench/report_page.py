"""How fast the HTML report (`python -m conformance report --html`) loads
with many items, in headless Chromium.

Builds synthetic merged results (default 100,000 items: 4 machines, 5
backends, 2 profiles, 2,500 vectors, the outcomes a large vendor run might
have), writes the page, then loads it `--repeat` times in one headless
Chromium and reports:

* readyAt    ms from navigation start to the page's script being done
             (totals, matrix, runs and the first page of failures built),
             as the page measures it (`window.reportTiming.readyAt`);
* parseMs    ms of JSON.parse of the embedded data;
* buildMs    ms of building the DOM shown at load;
* wall       s from Page.navigate to ready, as this script sees it;
* and, once, the lazily built parts: every item listed (a count clicked),
  the skips by reason, the bug-class table.

    python bench/report_page.py [--items 100000] [--repeat 5] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from conformance import html_report
from conformance.browser import Chromium
from conformance.results import OUTCOMES, FlagRef, Result, Results, Run

WEIGHTS = {"passed": 80, "skipped": 10, "failed": 4, "error": 1, "crashed": 0.5, "timeout": 0.5, "xfailed": 4}
READY = "document.documentElement.dataset.ready === '1'"


def synthetic(items: int, seed: int = 1) -> Results:
    """Merged results of `items` items, deterministic for a seed."""
    rng = random.Random(seed)
    machines = [f"lab-{m}" for m in range(4)]
    backends = [f"backend-{b}" for b in range(5)]
    profiles = ["mainline", "tdx-v10"]
    per_vector = len(machines) * len(backends) * len(profiles)
    classes = [f"class-{c}" for c in range(12)]
    flags = [FlagRef(f"flag-{k}", classes[k % len(classes)]) for k in range(80)]
    reasons = [f"cap:{k}: the backend lacks capability {k} on this machine" for k in range(30)]
    known = [f"erratum {k}: declared to fail" for k in range(8)]
    runs = tuple(
        Run(
            framework_version="0.1.0",
            suite_hash="sha256:" + "0" * 64,
            host=m,
            kernel="6.18",
            started="2026-01-01T00:00:00Z",
        )
        for m in machines
    )
    outcomes, weights = list(WEIGHTS), list(WEIGHTS.values())
    results = []
    for n in range(items):
        v, rest = divmod(n, per_vector)
        m, rest = divmod(rest, len(backends) * len(profiles))
        b, p = divmod(rest, len(profiles))
        outcome = rng.choices(outcomes, weights)[0]
        vector_flags = tuple(flags[(v * 7 + k) % len(flags)] for k in range(1 + v % 2))
        detail = {
            "skipped": rng.choice(reasons),
            "failed": f"step 1 (unmap_gfn_range, line {v}):\n  mappings:\n    - direct 4K gfn {n:#x}\n  flush: expected true, observed false",
            "xfailed": f"step 2: decision: expected both, observed shared ({n})",
        }.get(outcome, f"backend {backends[b]} raised RuntimeError: item {n}" if outcome in OUTCOMES[2:5] else "")
        results.append(
            Result(
                nodeid=f"suites/s{v % 40}.toml::v{v}[{backends[b]}:{profiles[p]}]",
                vector=f"s{v % 40}::v{v}",
                backend=backends[b],
                profile=profiles[p],
                outcome=outcome,
                detail=detail,
                ignored=("step 1: decision (not declared observable)",) if b == 4 else (),
                where={"kernel": "6.18", "tdp_mmu": "Y" if m % 2 else "N"},
                description=f"synthetic vector {v}: a zap of a range of private and shared leaves",
                flags=vector_flags,
                known_failure=rng.choice(known) if outcome == "xfailed" else "",
                run=m,
            )
        )
    return Results(runs, tuple(results))


def measure(page: Path, repeat: int) -> None:
    with Chromium(timeout=120) as browser:
        timings = []
        for _ in range(repeat):
            wall = browser.open(page.as_uri(), READY)
            timings.append((browser.evaluate("window.reportTiming"), wall))
        for name in ("readyAt", "parseMs", "buildMs"):
            values = [t[name] for t, _ in timings]
            print(
                f"{name:8} median {statistics.median(values):7.0f} ms  (first {values[0]:.0f}, min {min(values):.0f}, "
                f"max {max(values):.0f})"
            )
        walls = [w for _, w in timings]
        print(f"wall     median {statistics.median(walls):7.2f} s   (min {min(walls):.2f}, max {max(walls):.2f})")
        for what, action in (
            ("all items listed", "document.querySelector('#matrix tr.all [data-outcome=total] button').click()"),
            ("skips by reason", "document.querySelector('#skips summary').click()"),
            ("bug classes", "document.querySelector('#classes summary').click()"),
        ):
            started = browser.evaluate("performance.now()")
            browser.evaluate(action)
            done = browser.evaluate("new Promise(r => requestAnimationFrame(() => r(performance.now())))")
            print(f"{what:18} {done - started:6.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="write the page here instead of a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        page = (args.keep or Path(scratch)) / "report.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        merged = synthetic(args.items)
        built = time.monotonic()
        page.write_text(html_report.render(merged), encoding="utf-8")
        written = time.monotonic()
        print(
            f"{args.items} items: built in {built - started:.2f} s, page written in {written - built:.2f} s, "
            f"{page.stat().st_size / 1e6:.1f} MB"
        )
        measure(page, args.repeat)


if __name__ == "__main__":
    main()
