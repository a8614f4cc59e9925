"""The rust backend against the reference, on identical workloads, in one run.

Three workloads, all on a TDX VM (GPAW 52, shared bit at GFN bit 39) under
the mainline rules. The first two drive each backend's model directly (the
reference's `Mmu` and rule functions; the crate's `Model`); the third goes
through each backend's `run(vector, profile)`, as the runner does:

* **1M**: populate N mappings (default 1,000,000: half in the mirror root,
  4K; half in the direct root through the alias, 4K/2M/1G mixed 90/9/1),
  then Z random `kvm_zap_gfn_range` calls (default 10,000; start uniform
  over the populated span, length log-uniform from 1 page to 2^24 pages).
  Each backend's populate starts from its own input form (the reference a
  `State` of `Mapping`s, the crate the adapter's tuples; building either is
  not timed, the adapter's encoding is reported separately). The reference
  zaps in time linear in the leaves present (about 0.4 s per zap at 1M), so
  both backends run the first K zaps (default 500) on identical state, which
  is the measured comparison, and must then hold the same mappings and have
  returned the same flushes; the crate goes on to run all Z.
* **range**: 1,000 mappings (500 per root) in the first 1,024 GFNs, zapped
  by one `kvm_zap_gfn_range` over [0, 2^k) for k = 10, 20, 30, 40: the same
  leaves go each time, so the cost must not grow with k. Median of R
  repetitions, each on a freshly built state (not timed).

    python bench/rust_vs_reference.py [--mappings N] [--zaps Z] [--reference-zaps K] [--repeat R] [--seed S]

Writes bench/results/rust_vs_reference.json and prints a table.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

from conformance import validate
from conformance.build import share_initial_leaves
from conformance.model import (
    Kind,
    Level,
    Mapping,
    MmuNotifierInvalidate,
    Observable,
    Observables,
    Operation,
    Profile,
    Root,
    Slot,
    State,
    Step,
    Vector,
    Vm,
    VmType,
    ZapAll,
    ZapGfnRange,
)
from conformance.verdict import judge
from conformance_reference import mainline
from conformance_reference.mmu import Mmu
from conformance_reference.plugin import ReferenceBackend
from conformance_rust import _mmu
from conformance_rust.encode import PROFILES, mapping_tuple, slot_tuple, vm_tuple
from conformance_rust.plugin import RustBackend

RESULTS = Path(__file__).resolve().parent / "results" / "rust_vs_reference.json"
VM = Vm(VmType.TDX, tdp_mmu=True, rmaps=False, gpaw=52)
SLOT = Slot(id=1, base_gfn=0, npages=1 << 38, private=True)
ZAP_GFN_RANGE = 1  # op code of kvm_zap_gfn_range in the crate's encoding


def populate(rng: random.Random, count: int) -> list[Mapping]:
    """`count` non-overlapping leaves laid out left to right with random gaps."""
    out: list[Mapping] = []
    mirror, direct = 0, 0
    for i in range(count):
        if i % 2:
            mirror += rng.randrange(1, 8)
            out.append(Mapping(0, Root.MIRROR, mirror, Level.L4K, Kind.PRIVATE))
            mirror += 1
            continue
        level = rng.choices((Level.L4K, Level.L2M, Level.L1G), (90, 9, 1))[0]
        direct = -(-(direct + rng.randrange(0, 8)) // level.pages) * level.pages
        out.append(Mapping(0, Root.DIRECT, direct | VM.shared_bit, level, Kind.SHARED))
        direct += level.pages
    assert max(mirror, direct) < VM.shared_bit, "the layout must stay below the shared bit"
    return out


def random_zaps(rng: random.Random, count: int, span: int) -> list[tuple[int, int]]:
    zaps = []
    for _ in range(count):
        start = rng.randrange(span)
        zaps.append((start, start + int(2 ** rng.uniform(0, 24))))
    return zaps


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def rust_model(mappings: list[tuple]) -> object:
    return _mmu.Model(PROFILES[Profile.MAINLINE], vm_tuple(VM), [slot_tuple(SLOT)], [], mappings)


def million(mappings: int, zaps: int, reference_zaps: int, seed: int) -> dict:
    """Both backends populate and run the first `reference_zaps` zaps on
    identical state (the measured comparison); the crate then runs the rest."""
    rng = random.Random(seed)
    leaves = populate(rng, mappings)
    span = max(m.end & ~VM.shared_bit for m in leaves)
    ranges = random_zaps(rng, zaps, span)
    prefix = ranges[:reference_zaps]
    state = State(VM, (SLOT,), (), frozenset(leaves))
    encode_s, tuples = timed(lambda: [mapping_tuple(m) for m in leaves])

    rust_populate_s, model = timed(lambda: rust_model(tuples))
    rust_prefix_s, rust_outcomes = timed(lambda: model.steps([(ZAP_GFN_RANGE, r) for r in prefix]))
    rust_after_prefix = model.mappings()
    rust_rest_s, _ = timed(lambda: model.steps([(ZAP_GFN_RANGE, r) for r in ranges[reference_zaps:]]))

    ref_populate_s, mmu = timed(lambda: Mmu(state))

    def ref_run() -> list[bool]:
        flushes = []
        for start, end in prefix:
            before = mmu.remote_flushes
            mainline.zap_gfn_range(mmu, start, end)
            flushes.append(mmu.remote_flushes > before)
        return flushes
    ref_prefix_s, ref_flushes = timed(ref_run)

    assert [o[0] for o in rust_outcomes] == ref_flushes, "the backends disagree on a flush"
    assert sorted(map(mapping_tuple, mmu.mappings())) == sorted(rust_after_prefix), "the backends disagree"
    rust_measured, ref_measured = rust_populate_s + rust_prefix_s, ref_populate_s + ref_prefix_s
    return {
        "mappings": mappings, "zaps": zaps, "reference_zaps": len(prefix), "span_gfns": span,
        "left_after_reference_zaps": len(rust_after_prefix), "left_after_all": model.leaf_count(),
        "encode_s": encode_s,
        "rust": {"populate_s": rust_populate_s, "zaps_s": rust_prefix_s, "total_s": rust_measured,
                 "per_zap_us": rust_prefix_s / max(len(prefix), 1) * 1e6,
                 "all_zaps_s": rust_prefix_s + rust_rest_s, "workload_s": rust_populate_s + rust_prefix_s + rust_rest_s},
        "reference": {"populate_s": ref_populate_s, "zaps_s": ref_prefix_s, "total_s": ref_measured,
                      "per_zap_us": ref_prefix_s / max(len(prefix), 1) * 1e6},
        "speedup": ref_measured / rust_measured,
        "speedup_with_encode": ref_measured / (rust_measured + encode_s),
        "speedup_zaps": ref_prefix_s / rust_prefix_s,
    }


def cluster() -> list[Mapping]:
    """1,000 4K leaves in memslot GFNs [0, 1000): even ones private (mirror), odd ones shared (direct)."""
    return [Mapping(0, Root.MIRROR, g, Level.L4K, Kind.PRIVATE) if g % 2 == 0
            else Mapping(0, Root.DIRECT, g | VM.shared_bit, Level.L4K, Kind.SHARED) for g in range(1000)]


def range_sizes(repeat: int) -> list[dict]:
    leaves = cluster()
    state = State(VM, (SLOT,), (), frozenset(leaves))
    tuples = [mapping_tuple(m) for m in leaves]
    rows = []
    for bits in (10, 20, 30, 40):
        end = 1 << bits
        rust_times, ref_times = [], []
        for _ in range(repeat):
            model = rust_model(tuples)
            seconds, _ = timed(lambda: model.steps([(ZAP_GFN_RANGE, (0, end))]))
            assert model.leaf_count() == 0
            rust_times.append(seconds)
            mmu = Mmu(state)
            seconds, _ = timed(lambda: mainline.zap_gfn_range(mmu, 0, end))
            assert not mmu.mappings()
            ref_times.append(seconds)
        rows.append({"range_gfns": f"2^{bits}", "rust_us": statistics.median(rust_times) * 1e6,
                     "reference_us": statistics.median(ref_times) * 1e6})
    return rows


# ---------------------------------------------------------------- through run()

def shared_leaves(rng: random.Random, count: int) -> list[Mapping]:
    """`count` shared leaves in the direct root (4K/2M/1G 90/9/1), left to right with random gaps."""
    out, gfn = [], 0
    for _ in range(count):
        level = rng.choices((Level.L4K, Level.L2M, Level.L1G), (90, 9, 1))[0]
        gfn = -(-(gfn + rng.randrange(0, 8)) // level.pages) * level.pages
        out.append(Mapping(0, Root.DIRECT, gfn | VM.shared_bit, level, Kind.SHARED))
        gfn += level.pages
    assert gfn < 1 << 35
    return out


def sparse_leaves(rng: random.Random, count: int, shared: int = 16) -> list[Mapping]:
    """`count - shared` private 4K leaves in the mirror root below GFN 2^35, and
    `shared` shared 4K leaves in the direct root at GFNs in [2^36, 2^37)."""
    out, gfn = [], 0
    for _ in range(count - shared):
        gfn += rng.randrange(1, 8)
        out.append(Mapping(0, Root.MIRROR, gfn, Level.L4K, Kind.PRIVATE))
    assert gfn < 1 << 35
    high = sorted(rng.sample(range(1 << 36, 1 << 37), shared))
    return out + [Mapping(0, Root.DIRECT, g | VM.shared_bit, Level.L4K, Kind.SHARED) for g in high]


def one_step(name: str, state: State, op: Operation) -> Vector:
    return Vector(f"bench::{name}", name, frozenset({Profile.MAINLINE}), frozenset(), (), state,
                  (Step(op, Observables()),))


def expected(step: Step, observed: Observables, initial: frozenset[Mapping]) -> Step:
    """STEP expecting `observed`, as the loader builds it: its mappings distinct objects read from the
    file, then every leaf that is also an initial one spelt by the state's own object (build.py)."""
    mappings = frozenset(dataclasses.replace(m) for m in observed.mappings) if observed.mappings else frozenset()
    return share_initial_leaves(dataclasses.replace(step, expect=dataclasses.replace(observed, mappings=mappings)),
                                initial)


def run_cases(mappings: int, seed: int) -> list[tuple[str, str, Vector]]:
    rng = random.Random(seed)
    full = State(VM, (SLOT,), (), frozenset(shared_leaves(rng, mappings)))
    sparse = State(VM, (SLOT,), (), frozenset(sparse_leaves(rng, mappings)))
    half = State(VM, (SLOT,), (), frozenset(populate(rng, mappings)))
    return [
        ("zap_all", f"zap_all, {mappings:,} shared leaves (all go)", one_step("zap_all", full, ZapAll())),
        ("notifier", f"mmu_notifier_invalidate [0, 2^40), {mappings:,} leaves, 16 shared (16 go)",
         one_step("notifier", sparse, MmuNotifierInvalidate(0, 0, 1 << 40))),
        ("zap_gfn_range", f"zap_gfn_range [2^35, 2^40), {mappings:,} leaves, 16 in range (16 go)",
         one_step("zap_gfn_range", sparse, ZapGfnRange(1 << 35, 1 << 40))),
        ("zap_all_half", f"zap_all, {mappings:,} leaves, half shared (half go)",
         one_step("zap_all_half", half, ZapAll())),
    ]


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "all": values}


def through_run(mappings: int, rounds: int, seed: int) -> list[dict]:
    """Per case, `rounds` paired rounds: the reference's run(), then the rust
    backend's on a fresh Vector (the state not seen before: it is encoded),
    then on the same Vector again (the encoding cached), each followed by
    validate.problem and judge on its observation."""
    profile, observables = Profile.MAINLINE, frozenset(Observable)
    reference, rust = ReferenceBackend(), RustBackend()
    cases = run_cases(mappings, seed)
    # The expectation: the reference's own observation, as the loader would build it.
    cases = [(key, label, dataclasses.replace(v, steps=(expected(
        v.steps[0], reference.run(v, profile).steps[0], v.state.mappings),)))
        for key, label, v in cases]
    gc.collect()
    gc.freeze()  # as the runner does once the vectors are loaded
    rows = []
    for key, label, vector in cases:
        arms: dict[str, dict[str, list[float]]] = {
            arm: {"run": [], "run_cpu": [], "validate": [], "judge": []} for arm in ("reference", "rust", "rust_cached")}

        def measure(arm: str, backend: object, v: Vector, key: str = key, arms: dict = arms) -> None:
            cpu = time.process_time()
            seconds, observation = timed(lambda: backend.run(v, profile))  # type: ignore[attr-defined]
            cpu = time.process_time() - cpu
            check_s, bad = timed(lambda: validate.problem(observation, v))
            judge_s, verdict = timed(lambda: judge(v, observation, observables))
            assert bad is None, f"{key} {arm}: {bad}"
            assert verdict.passed, f"{key} {arm}: " + "\n".join(verdict.diffs[:5])
            for name, value in (("run", seconds), ("run_cpu", cpu), ("validate", check_s), ("judge", judge_s)):
                arms[arm][name].append(value)

        for _ in range(rounds):
            measure("reference", reference, vector)
            fresh = dataclasses.replace(vector, state=dataclasses.replace(vector.state))  # a Vector not seen before
            measure("rust", rust, fresh)
            measure("rust_cached", rust, fresh)
        left = len(vector.steps[0].expect.mappings or ())
        row = {"case": key, "label": label, "mappings": len(vector.state.mappings), "left": left,
               **{arm: {name: spread(v) for name, v in values.items()} for arm, values in arms.items()}}
        row["speedup"], row["speedup_cpu"] = (
            {arm: spread([a / b for a, b in zip(arms["reference"][what], arms[arm][what])])
             for arm in ("rust", "rust_cached")} for what in ("run", "run_cpu"))
        rows.append(row)
        print_run_row(row, rounds)
    gc.unfreeze()
    return rows


def print_run_row(row: dict, rounds: int) -> None:
    print(f"\n{row['label']}: {row['left']:,} leaves left; {rounds} paired rounds, ms min / median / max")
    print(f"{'':22}{'run()':>26}{'validate':>26}{'judge':>26}")
    ms = lambda s: f"{s['min'] * 1e3:8.1f}{s['median'] * 1e3:9.1f}{s['max'] * 1e3:9.1f}"  # noqa: E731
    for arm, name in (("reference", "reference"), ("rust", "rust"), ("rust_cached", "rust, state cached")):
        r = row[arm]
        print(f"{name:22}{ms(r['run'])}{ms(r['validate'])}{ms(r['judge'])}")
    for arm, name in (("rust", "rust"), ("rust_cached", "rust, state cached")):
        s, c = row["speedup"][arm], row["speedup_cpu"][arm]
        print(f"run() speed-up, {name}: {s['min']:.1f}x / {s['median']:.1f}x / {s['max']:.1f}x wall, "
              f"{c['min']:.1f}x / {c['median']:.1f}x / {c['max']:.1f}x CPU (paired rounds)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mappings", type=int, default=1_000_000)
    parser.add_argument("--zaps", type=int, default=10_000)
    parser.add_argument("--reference-zaps", type=int, default=500,
                        help="zaps the reference runs too (its zap is linear in the leaves present: "
                             "all 10,000 take it over an hour)")
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds of the run() cases")
    parser.add_argument("--only", default="million,range,run", help="comma-separated workloads to run")
    args = parser.parse_args()
    only = set(args.only.split(","))

    result: dict = {"python": sys.version.split()[0], "machine": platform.machine(),
                    "rust_version": _mmu.__version__, "args": vars(args)}
    if "run" in only:
        result["run"] = through_run(args.mappings, args.rounds, args.seed)
    if "million" in only:
        result["million"] = million(args.mappings, args.zaps, min(args.reference_zaps, args.zaps), args.seed)
    if "range" in only:
        result["range"] = range_sizes(args.repeat)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    if "million" in only:
        print_million(result["million"])
    if "range" in only:
        print_ranges(result["range"], args.repeat)
    return 0


def print_million(big: dict) -> None:
    n, k = big["zaps"], big["reference_zaps"]
    print(f"{big['mappings']:,} mappings; both backends: populate + the first {k:,} of {n:,} random "
          f"kvm_zap_gfn_range ({big['left_after_reference_zaps']:,} leaves left, identical in both)")
    print(f"{'':12}{'populate s':>12}{'zaps s':>10}{'total s':>10}{'per zap us':>12}")
    for name in ("rust", "reference"):
        r = big[name]
        print(f"{name:12}{r['populate_s']:12.3f}{r['zaps_s']:10.3f}{r['total_s']:10.3f}{r['per_zap_us']:12.1f}")
    print(f"adapter encoding (Mapping -> tuple), not in either total: {big['encode_s']:.3f} s")
    print(f"speed-up: {big['speedup']:.0f}x ({big['speedup_with_encode']:.0f}x charging the encoding to rust), "
          f"zaps alone {big['speedup_zaps']:.0f}x")
    print(f"rust, whole workload (populate + all {n:,} zaps): {big['rust']['workload_s']:.3f} s, "
          f"{big['left_after_all']:,} leaves left")


def print_ranges(ranges: list[dict], repeat: int) -> None:
    print(f"\none kvm_zap_gfn_range over [0, 2^k) holding 1,000 leaves (median of {repeat})")
    print(f"{'range':>8}{'rust us':>10}{'reference us':>14}")
    for row in ranges:
        print(f"{row['range_gfns']:>8}{row['rust_us']:10.1f}{row['reference_us']:14.1f}")
    ratios = [max(r[k] for r in ranges) / min(r[k] for r in ranges) for k in ("rust_us", "reference_us")]
    print(f"max/min over range sizes: rust {ratios[0]:.2f}, reference {ratios[1]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
