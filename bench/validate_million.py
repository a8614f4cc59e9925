"""How long `python -m conformance validate` takes on one vector of a
million mappings whose last leaf overlaps the first (issue 12's goal: under
30 s, naming both lines). Rounds alternate a good and a bad file (A B A B)
so that a noisy machine slows both alike; min/median/max are reported.

    python bench/validate_million.py [--leaves 1000000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = """[suite]
format = 1
description = "one vector, many leaves"

[[vector]]
id = "many-leaves"
description = "a slot full of 4K leaves"
profiles = ["mainline"]
flags = ["basic"]

[vector.vm]
type = "DEFAULT"
tdp_mmu = true

[[vector.slot]]
id = 1
base_gfn = 0
npages = {npages:#x}

[[vector.step]]
op = "zap_all"

[vector.initial]
mappings = [
"""


def write(path: Path, leaves: int, overlap: bool) -> int:
    """The file; returns the line of the first mapping."""
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER.format(npages=leaves + 1))
        first_line = HEADER.count("\n") + 1
        for gfn in range(leaves):
            out.write(f'  {{ root = "direct", gfn = {gfn:#x}, level = "4K" }},\n')
        out.write(f'  {{ root = "direct", gfn = {0 if overlap else leaves:#x}, level = "4K" }},\n]\n')
    return first_line


def validate(path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "conformance", "validate", str(path)], capture_output=True,
                         text=True, cwd=ROOT)
    return time.perf_counter() - start, out.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="validate-million-"))
    try:
        shutil.copy(ROOT / "suites" / "flags.toml", work / "flags.toml")
        good, bad = work / "good.toml", work / "bad.toml"
        write(good, args.leaves, overlap=False)
        first = write(bad, args.leaves, overlap=True)
        last = first + args.leaves
        size = bad.stat().st_size / 2**20
        print(f"{args.leaves:,} mappings, {size:.0f} MiB per file; rounds: good, bad, good, bad, ...")
        times: dict[str, list[float]] = {"good": [], "bad": []}
        for _ in range(args.rounds):
            for name, path in (("good", good), ("bad", bad)):
                seconds, stdout = validate(path)
                times[name].append(seconds)
                if name == "bad":
                    wanted = f"bad.toml:{last}: vector[0].initial.mappings[{args.leaves}].gfn:"
                    if wanted not in stdout or f"(line {first})" not in stdout:
                        print(f"unexpected answer: {stdout[:500]}")
                        return 1
                elif "1 vectors loaded" not in stdout:
                    print(f"unexpected answer: {stdout[:500]}")
                    return 1
        for name, values in times.items():
            print(f"{name}: min {min(values):.1f} s, median {statistics.median(values):.1f} s, "
                  f"max {max(values):.1f} s")
        print(f"the overlap is reported at line {last} with the first leaf's line {first}")
        return 0 if max(times["bad"]) < 30 else 2
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
