"""What pytest-xdist itself costs per item, and the speed-up it allows on this machine.

Bare pytest (no conformance plugin) runs N trivial parametrised items three
ways in paired rounds (the order reversed every other round): serial
(``-p no:xdist``), ``-n 1`` and ``-n CPUs``. Per round:

* **tax per item**: (CPU of ``-n 1`` - CPU of serial) / N, the controller's
  and the worker's CPU included (the controller waits for its workers, so
  their CPU time is in its rusage): what moving one item's reports from a
  worker to the controller and reporting them there costs;
* **the ceiling**: with items of W ms of their own work and that tax T, C
  CPUs give at most C x W / (W + T) over serial, before any start-up; W
  defaults to the suite's measured item (the work floor at Kx in
  ``bench/results/runner_overhead.json``, when that file exists).

    python bench/xdist_tax.py [--items 17290] [--repeat 5] [--item-ms W]

docs/benchmarks.md (runner overhead, ``-n auto``) has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner_overhead as ro  # noqa: E402  (the same runs, commands and statistics)

RESULTS = ro.REPO / "bench" / "results" / "xdist_tax.json"


def suite_item_ms() -> float | None:
    """The work floor's wall time per item at the larger scale of the last runner benchmark, if any."""
    try:
        data = json.loads(ro.RESULTS.read_text(encoding="utf-8"))
        work = [n for n in data["runs"] if n.startswith("work-") and n != "work-1x"]
        runs = data["runs"][work[0]]
        return statistics.median(r["wall"] for r in runs) / data["commands"][work[0]]["items"] * 1000
    except (OSError, ValueError, KeyError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=17290, help="trivial items (default: the suite's at 10x)")
    parser.add_argument("--repeat", type=int, default=5, help="paired rounds (default 5)")
    parser.add_argument("--item-ms", type=float, help="an item's own work for the ceiling (default: measured)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    cpus = os.cpu_count() or 1
    item_ms = args.item_ms or suite_item_ms()
    with tempfile.TemporaryDirectory(prefix="xdist-tax-") as tmp:
        scratch = Path(tmp)
        env = ro.bench_env(scratch / "pycache")
        project = ro.write_project(scratch / "floor", tests=args.items)
        base = (["test_floor.py"], ro.NO_PLUGIN, ro.NO_HYPOTHESIS, ["-q"])
        block = ro.Block(
            "xdist",
            (
                ro.command("serial", (*base, ["-p", "no:xdist"]), project, args.items, scratch),
                ro.command("n1", (*base, ["-n", "1"]), project, args.items, scratch),
                ro.command(f"n{cpus}", (*base, ["-n", str(cpus)]), project, args.items, scratch),
            ),
        )
        for cmd in block.commands:  # warm-up: bytecode, caches
            ro.run(cmd, env)
        runs: dict[str, list[ro.Run]] = {c.name: [] for c in block.commands}
        for turn in range(args.repeat):
            for cmd in block.order(turn):
                runs[cmd.name].append(ro.run(cmd, env)[0])
    n = args.items
    tax = [(b.cpu - a.cpu) / n * 1000 for a, b in zip(runs["serial"], runs["n1"])]
    speed = [a.wall / b.wall for a, b in zip(runs["serial"], runs[f"n{cpus}"])]
    serial_ms = [r.cpu / n * 1000 for r in runs["serial"]]
    figures = {
        "tax_ms_per_item": ro.summary(tax),
        "serial_cpu_ms_per_item": ro.summary(serial_ms),
        f"trivial_items_speed_up_n{cpus}": ro.summary(speed),
    }
    lines = [
        f"{n:,} trivial items, {args.repeat} paired rounds, {cpus} CPUs (min / median / max)",
        "serial CPU per item: {min:.3f} / {median:.3f} / {max:.3f} ms".format(**figures["serial_cpu_ms_per_item"]),
        "xdist tax per item (CPU of -n 1 - serial): {min:.3f} / {median:.3f} / {max:.3f} ms".format(
            **figures["tax_ms_per_item"]
        ),
        f"trivial items, serial / -n {cpus}: " + "{min:.2f} / {median:.2f} / {max:.2f}x".format(**figures[
            f"trivial_items_speed_up_n{cpus}"
        ]),
    ]
    if item_ms:
        t = figures["tax_ms_per_item"]["median"]
        figures["item_ms"] = item_ms
        figures["ceiling"] = cpus * item_ms / (item_ms + t)
        lines.append(
            f"ceiling for {item_ms:.3f} ms items on {cpus} CPUs: {cpus} x W / (W + T) = {figures['ceiling']:.2f}x"
        )
    print("\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    out = {"command": " ".join(["python bench/xdist_tax.py", *(sys.argv[1:] if argv is None else argv)]),
           "machine": ro.machine(), "uptime": ro.uptime(), "figures": figures,
           "runs": {k: [vars(r) for r in v] for k, v in runs.items()}}
    args.output.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
