"""How many xdist workers `-n auto` starts for a suite run.

A worker pays for itself only when the items' own time, shared out, saves
more than the workers cost: their start-up (interpreter, plugins, backends,
collection) and, per item, what xdist spends to move its reports to the
controller and report them there. That is about 0.6 ms of CPU per item for
bare pytest's trivial items and 0.7 ms for ours (bench/xdist_tax.py), as long
as a model backend's item, and on two CPUs the controller competes with the
workers for them; the constants below are fitted to what was measured. So the
runner records what a run measured (item time, items, start-up) in pytest's
cache and decides from that; with no record it leaves the choice to xdist
(one worker per CPU). Only a run without workers refreshes a record: items
that share the CPUs with other workers and a controller take longer, and a
record taken from them would tip the next choice the other way.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

KEY = "conformance/timing"  # pytest cache key, per set of --backend options
# Fitted to the suite at 1x and 10x on 2 CPUs (docs/benchmarks.md): a run with workers took
# start-up + XDIST_SECONDS + (items' time + items x MESSAGE_SECONDS) / CPUs.
MESSAGE_SECONDS = 0.0012  # xdist's cost of one item (its reports, worker to controller), shared by the CPUs
XDIST_SECONDS = 0.85  # starting the workers and gathering their collections, beyond one process's start-up
MARGIN = 0.05  # workers must save a twentieth of the serial time: the estimate is rough
DEFAULT_STARTUP_SECONDS = 2.0  # before any serial run has measured it
UNSEEN_STARTUP_SECONDS = 0.5  # interpreter and pytest before the plugin is imported, where /proc cannot say


@dataclass(frozen=True)
class Timing:
    item_seconds: float  # the items' own (call) time, summed
    items: int
    startup_seconds: float  # one process: start to collection finished

    def workers(self, cpus: int) -> int:
        """0 (run in-process) or `cpus`."""
        if cpus < 2:
            return 0
        serial = self.startup_seconds + self.item_seconds
        parallel = self.startup_seconds + XDIST_SECONDS + (self.item_seconds + self.items * MESSAGE_SECONDS) / cpus
        return cpus if serial - parallel > MARGIN * serial else 0


def age(since_plugin: float) -> float:
    """This process's age: what a worker's start-up costs (interpreter, pytest, plugins, collection).

    From the kernel's start time of the process where /proc has it; else the
    time since the plugin was imported, which misses the interpreter's and
    pytest's own start (about half a second here), plus that half second.
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as stat, open("/proc/uptime", encoding="ascii") as up:
            started = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime, in clock ticks
            return float(up.read().split()[0]) - started / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return since_plugin + UNSEEN_STARTUP_SECONDS


def share(workers: int, cpus: int) -> float:
    """The part of a CPU each of WORKERS processes (and the controller) had on CPUS: their items' wall
    times, times this, estimate what the items take alone (1 with no workers, or CPUs to spare)."""
    return min(1.0, cpus / (workers + 1)) if workers else 1.0


def key(backends: list[str]) -> str:
    """Runs of other backends take other times: one record per --backend choice."""
    return f"{KEY}/{'+'.join(sorted(set(backends))) or 'every-backend'}"


def cache_file(rootpath: Path, cache_dir: str, backends: list[str]) -> Path:
    """Where pytest's cache keeps the record (`<cache_dir>/v/<key>`)."""
    base = Path(os.path.expandvars(os.path.expanduser(cache_dir)))
    return (rootpath / base if not base.is_absolute() else base) / "v" / key(backends)


def read(path: Path) -> Timing | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Timing(float(data["item_seconds"]), int(data["items"]), float(data["startup_seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record(timing: Timing) -> dict[str, float | int]:
    return asdict(timing)
