"""`-n auto` on a suite run starts workers only where the last run says they pay."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from conformance import workers
from conformance.workers import Timing, cache_file, key, share

ROOT = Path(__file__).resolve().parent.parent


def test_model_backends_run_in_process_and_slow_items_get_workers() -> None:
    fast = Timing(item_seconds=2.0, items=1729, startup_seconds=2.5)  # the reference backend, 1x
    assert fast.workers(2) == 0
    slow = Timing(item_seconds=120.0, items=1500, startup_seconds=3.0)  # 80 ms items
    assert slow.workers(2) == 2 and slow.workers(1) == 0


def test_the_suite_at_1x_and_10x_as_measured() -> None:
    # serial reference runs on 2 CPUs (docs/benchmarks.md): 1x was no faster with workers, 10x was
    assert Timing(item_seconds=2.6, items=1729, startup_seconds=0.45).workers(2) == 0
    assert Timing(item_seconds=27.5, items=17290, startup_seconds=0.9).workers(2) == 2


def test_one_record_per_backend_choice(tmp_path: Path) -> None:
    assert key(["rust", "reference", "rust"]) == "conformance/timing/reference+rust"
    assert cache_file(tmp_path, ".cache", []) == tmp_path / ".cache" / "v" / "conformance" / "timing" / "every-backend"


def _run(cache: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "pytest", "suites/call/zap-all.toml", "--backend", "reference",
                          "-o", f"cache_dir={cache}", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:]
    return out.stdout


def test_a_run_records_its_timing_and_the_next_auto_run_uses_it(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _run(cache, "-n", "auto")  # no record yet: xdist's choice
    assert re.search(r"created: \d+/\d+ workers", first)
    record = json.loads((cache / "v" / "conformance" / "timing" / "reference").read_text())
    assert record["items"] > 0 and record["item_seconds"] > 0
    second = _run(cache, "-n", "auto")  # a few milliseconds of items: not worth a worker
    assert "workers" not in second and " passed" in second


def test_a_run_with_workers_leaves_the_record_of_a_run_without(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    _run(cache, "-p", "no:xdist")
    path = cache / "v" / "conformance" / "timing" / "reference"
    serial = path.read_text()
    assert json.loads(serial)["items"] > 0
    assert re.search(r"created: 2/2 workers", _run(cache, "-n", "2"))
    assert path.read_text() == serial


def test_items_timed_beside_workers_are_scaled_to_their_share_of_the_cpus() -> None:
    assert share(0, 2) == 1.0  # in-process
    assert share(2, 2) == 2 / 3  # two workers and the controller on two CPUs
    assert share(2, 8) == 1.0  # CPUs to spare


def test_start_up_counts_from_the_process_start(monkeypatch) -> None:
    assert 0 < workers.age(0.0) < 3600  # this process's age, interpreter start included
    def no_proc(*args, **kwargs):
        raise OSError("no /proc")
    monkeypatch.setattr("builtins.open", no_proc)
    assert workers.age(0.2) == 0.2 + workers.UNSEEN_STARTUP_SECONDS
