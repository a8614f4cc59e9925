"""bench/runner_overhead.py's helpers on toy cases, and bench/xdist_tax.py on a tiny one (the benchmarks themselves are not run here)."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("runner_overhead", REPO / "bench" / "runner_overhead.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def runs(bench: ModuleType, walls: list[float], rss: int = 1000) -> list:
    return [bench.Run(wall=w, cpu=w / 2, maxrss_kb=rss + i, session=None) for i, w in enumerate(walls)]


def test_ratios_are_paired_per_round_not_taken_from_medians(bench: ModuleType) -> None:
    measure = bench.Measure("m", "blk", "floor", "suite", "b/a", items=10, goal=1.1)
    data = {"floor": runs(bench, [1.0, 3.0, 2.0]), "suite": runs(bench, [3.0, 3.0, 1.0])}
    per_round = bench.paired(data, measure)
    assert per_round == [3.0, 1.0, 0.5]
    assert bench.summary(per_round) == {"min": 0.5, "median": 1.0, "max": 3.0}
    # the old method, a ratio of medians, would have said 3.0 / 2.0
    assert measure.verdict(1.0) == "PASS" and measure.verdict(1.2) == "MISS"


def test_speed_up_and_memory_measures(bench: ModuleType) -> None:
    data = {"serial": runs(bench, [4.0, 6.0], rss=1000), "nauto": runs(bench, [2.0, 4.0], rss=1500)}
    speed_up = bench.Measure("n", "blk", "serial", "nauto", "a/b", items=100, goal=1.5)
    assert bench.paired(data, speed_up) == [2.0, 1.5]
    assert speed_up.verdict(1.5) == "PASS" and speed_up.verdict(1.4) == "MISS"
    memory = bench.Measure("r", "blk", "serial", "nauto", "rss", items=100)
    assert bench.paired(data, memory) == [5.0, 5.0]  # (1500 - 1000) KB / 100 items
    assert memory.verdict(5.0) == ""


def test_unequal_run_counts_are_refused(bench: ModuleType) -> None:
    data = {"a": runs(bench, [1.0, 1.0]), "b": runs(bench, [1.0])}
    with pytest.raises(ValueError):
        bench.paired(data, bench.Measure("m", "blk", "a", "b", "b/a", items=1))


def test_order_alternates_between_rounds(bench: ModuleType, tmp_path: Path) -> None:
    a, b, c = (bench.command(n, [["x"]], tmp_path, 1, tmp_path) for n in "abc")
    block = bench.Block("blk", (a, b, c))
    assert [block.order(t) for t in range(3)] == [(a, b, c), (c, b, a), (a, b, c)]


def all_toy_commands(bench: ModuleType, tmp_path: Path) -> list:
    blocks = []
    for label in ("1x", "3x"):
        floors = (tmp_path / f"floor-{label}", tmp_path / f"work-{label}")
        more, _ = bench.scale_blocks(label, tmp_path / label, ("s",), floors, 3, tmp_path)
        blocks += more
    blocks.append(bench.startup_block(tmp_path / "empty", tmp_path)[0])
    return bench.all_commands(blocks)


def test_commands_never_share_an_argument_list(bench: ModuleType, tmp_path: Path) -> None:
    commands = all_toy_commands(bench, tmp_path)
    argvs = [c.argv() for c in commands]
    assert all(isinstance(c.args, tuple) for c in commands)  # immutable: `args += ...` cannot reach another
    for ax, ay in itertools.combinations(argvs, 2):
        assert ax is not ay
    caches = [[a for a in argv if a.startswith("cache_dir=")] for argv in argvs]
    assert all(len(c) == 1 for c in caches)  # one cache_dir each, not two
    assert len({c[0] for c in caches}) == len(commands)  # and each its own
    argvs[0].append("--mutated")
    assert "--mutated" not in commands[0].argv() and all("--mutated" not in a for a in argvs[1:])


def test_commands_compared_against_a_goal_are_adjacent(bench: ModuleType, tmp_path: Path) -> None:
    blocks, measures = [], []
    for label in ("1x", "3x"):
        more, more_measures = bench.scale_blocks(label, tmp_path, ("s",), (tmp_path, tmp_path), 3, tmp_path)
        blocks += more
        measures += more_measures
    block, startup_measures = bench.startup_block(tmp_path, tmp_path)
    blocks.append(block)
    by_name = {b.name: [c.name for c in b.commands] for b in blocks}
    assert len([m for m in measures if m.goal is not None]) == 6  # runner warm, cold, -n auto; at 1x and 3x
    for m in [*measures, *startup_measures]:
        if m.goal is None and m.block != "startup":
            continue  # five commands cannot all be next to each other: the goals' pairs are
        names = by_name[m.block]
        assert abs(names.index(m.a) - names.index(m.b)) == 1, m.name
    commands = bench.all_commands(blocks)
    assert {c.name for c in commands if c.cold} == {c.name for c in commands if c.name.endswith("-cold")}


def test_scaled_suite_copies_share_one_registry(bench: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "call").mkdir(parents=True)
    (source / "flags.toml").write_text("")
    (source / "call" / "x.toml").write_text("")
    assert bench.write_suite_project(tmp_path / "p", source, 2) == ("s",)
    found = sorted(p.relative_to(tmp_path / "p").as_posix() for p in (tmp_path / "p").rglob("*.toml"))
    assert found == ["s/c0/call/x.toml", "s/c1/call/x.toml", "s/flags.toml"]


def test_session_time_is_read_from_the_last_line(bench: ModuleType) -> None:
    assert bench.session_seconds("....\n12 passed in 0.45s\n") == 0.45
    assert bench.session_seconds("no tests ran in 1.20s") == 1.2
    assert bench.session_seconds("") is None


def test_a_cold_run_starts_from_an_empty_cache(bench: ModuleType, tmp_path: Path) -> None:
    project = bench.write_project(tmp_path / "floor", tests=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}  # bytecode as the caller has it
    args = [["test_floor.py"], bench.NO_PLUGIN, bench.NO_HYPOTHESIS, bench.SERIAL]  # hypothesis: a slow import
    cold = bench.command("cold", args, project, 3, tmp_path, cold=True)
    (cold.cache / "marker").parent.mkdir(parents=True)
    (cold.cache / "marker").write_text("")
    result, out = bench.run(cold, env)
    assert "3 passed" in out and not (cold.cache / "marker").exists() and cold.cache.is_dir()
    assert result.wall > 0 and result.cpu > 0 and result.maxrss_kb > 1000 and result.session is not None
    assert bench.count_items(cold, env) == 3
    with pytest.raises(RuntimeError, match="exited 5"):
        bench.run(cold, env, args=["-k", "nothing-matches", *cold.args])


def test_children_import_the_snapshot_not_the_checkout(bench: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "checkout" / "toypkg").mkdir(parents=True)
    (tmp_path / "checkout" / "toypkg" / "__init__.py").write_text("")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tmp_path / "checkout")}
    found = bench.take_snapshot({"toypkg": tmp_path / "checkout" / "toypkg"}, tmp_path / "snap", env)
    assert found == {"toypkg": str(tmp_path / "snap" / "toypkg" / "__init__.py")}
    assert env["PYTHONPATH"] == os.pathsep.join([str(tmp_path / "snap"), str(tmp_path / "checkout")])
    assert bench.editable_packages(tmp_path / "checkout") == {}  # no editable install from there


def test_a_copy_has_the_fingerprint_of_its_original(bench: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "a" / "sub" / "m.py").write_text("x = 1\n")
    (tmp_path / "a" / "README").write_text("not code\n")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert bench.fingerprint([tmp_path / "a"]) == bench.fingerprint([tmp_path / "b"])
    (tmp_path / "b" / "sub" / "m.py").write_text("x = 2\n")
    assert bench.fingerprint([tmp_path / "a"]) != bench.fingerprint([tmp_path / "b"])


def test_the_work_floor_runs_every_item_the_suite_runs(bench: ModuleType, tmp_path: Path) -> None:
    source = tmp_path / "src"
    (source / "live").mkdir(parents=True)
    shutil.copy2(REPO / "suites" / "flags.toml", source / "flags.toml")
    shutil.copy2(REPO / "suites" / "live" / "memslot.toml", source / "live" / "memslot.toml")
    paths = bench.write_suite_project(tmp_path / "suite", source, 2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    work, cases = bench.write_work_floor(tmp_path / "work", tmp_path / "suite", paths, env)
    suite = bench.command("suite", [paths, bench.BACKEND, bench.SERIAL], tmp_path / "suite", cases, tmp_path)
    floor = bench.command("work", [["test_work.py"], bench.NO_PLUGIN, bench.SERIAL], work, cases, tmp_path)
    (_, suite_out), (_, floor_out) = bench.run(suite, env), bench.run(floor, env)
    assert cases > 0 and f"{cases} passed" in suite_out and f"{cases} passed" in floor_out


def test_the_xdist_tax_bench_measures_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "tax.json"
    argv = [sys.executable, str(REPO / "bench" / "xdist_tax.py"), "--items", "40", "--repeat", "1",
            "--item-ms", "1.5", "--output", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())["figures"]
    assert figures["serial_cpu_ms_per_item"]["median"] > 0 and "ceiling for 1.500 ms items" in done.stdout
    cpus = os.cpu_count() or 1
    assert figures["ceiling"] == cpus * 1.5 / (1.5 + figures["tax_ms_per_item"]["median"])
