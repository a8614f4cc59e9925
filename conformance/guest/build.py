"""`guest build`: the Debian kernel source, the repository's config fragment,
and a bzImage in the cache. The tree is built under the cache's build/
directory and removed after success; only a finished, verified image is
renamed into place, so an interrupted build never looks like a cached one
(and a rerun continues from the tree it left)."""

from __future__ import annotations

import collections
import contextlib
import datetime
import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from . import config, images, proc
from .progress import Meter, duration

TAIL = 40
EXTRACTED = ".extracted"  # names the tree once tar has finished


class BuildError(Exception):
    pass


@dataclass(frozen=True)
class Plan:
    source: images.Source
    fragment: config.Fragment
    root: Path  # the guest cache
    jobs: int
    expected_objects: int

    @property
    def key(self) -> str:
        return images.image_key(self.source, self.fragment)

    @property
    def work(self) -> Path:
        return self.root / "build" / self.key


Say = Callable[[str], None]


def build(plan: Plan, say: Say, clock: Callable[[], float] = time.monotonic) -> images.Image:
    began = clock()
    plan.work.mkdir(parents=True, exist_ok=True)
    lock = plan.work.parent / f"{plan.key}.lock"
    with exclusive(lock):
        with (plan.work / "build.log").open("a") as log:
            image = make_image(plan, say, log, clock, began)
        shutil.rmtree(plan.work, ignore_errors=True)
        lock.unlink()
    meta = image.meta()
    say(
        f"guest build: Linux {meta['release']}, {meta['objects']} objects, {duration(meta['seconds'])}: {image.bzimage}"
    )
    return image


def make_image(plan: Plan, say: Say, log: TextIO, clock: Callable[[], float], began: float) -> images.Image:
    say(f"guest build: {plan.key} in {plan.work} (log: {log.name})")
    tree = extract(plan, say, log)
    say(
        f"guest build: configuring ({plan.fragment.base}, {len(plan.fragment.enable)} enabled, "
        f"{len(plan.fragment.disable)} disabled, {plan.fragment.passes} passes)"
    )
    for argv in config.commands(plan.fragment):
        step(argv, tree, log)
    values = config.read_config((tree / ".config").read_text(encoding="utf-8"))
    missing = config.unmet(values, plan.fragment.require)
    if missing:
        raise BuildError(
            "the configured kernel lacks required options: "
            + ", ".join(missing)
            + f"\n(fragment: {config.FRAGMENT}; .config: {tree / '.config'})"
        )
    for note in config.not_applied(values, plan.fragment):
        say(f"guest build: note: Kconfig overrode the fragment: {note}")
    say(f"guest build: compiling with {plan.jobs} job(s), about {plan.expected_objects} objects")
    meter = Meter(plan.expected_objects, clock)
    step(["make", f"-j{plan.jobs}", "bzImage"], tree, log, lambda line: show(meter.feed(line), say))
    release = step(["make", "-s", "kernelrelease"], tree, log)[-1].strip()
    bzimage = tree / "arch/x86/boot/bzImage"
    problem = images.boot_problem(bzimage)
    if problem:
        raise BuildError(f"make finished but {problem}")
    return images.install(
        plan.root,
        plan.key,
        bzimage,
        tree / ".config",
        {
            "key": plan.key,
            "source": str(plan.source.tarball),
            "source_version": plan.source.version,
            "fragment": plan.fragment.digest(),
            "release": release,
            "objects": meter.done,
            "jobs": plan.jobs,
            "seconds": round(clock() - began),
            "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    )


def show(line: str | None, say: Say) -> None:
    if line:
        say(line)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    with path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(f"another `guest build` of this image is running (lock {path})") from None
        yield


def extract(plan: Plan, say: Say, log: TextIO) -> Path:
    """The unpacked source tree, unpacked again unless a previous run finished tar."""
    stamp = plan.work / EXTRACTED
    if stamp.is_file() and (plan.work / stamp.read_text().strip()).is_dir():
        say("guest build: reusing the source tree an earlier run left")
        return plan.work / stamp.read_text().strip()
    for leftover in plan.work.iterdir():
        if leftover.is_dir():
            shutil.rmtree(leftover)
    say(f"guest build: extracting {plan.source.tarball} (about half a minute)")
    step(["tar", "-xf", str(plan.source.tarball), "-C", str(plan.work)], plan.work, log)
    trees = [d for d in plan.work.iterdir() if d.is_dir()]
    if len(trees) != 1:
        raise BuildError(f"{plan.source.tarball} did not unpack into one directory: {sorted(d.name for d in trees)}")
    stamp.write_text(trees[0].name)
    return trees[0]


def step(argv: Sequence[str], cwd: Path, log: TextIO, each: Callable[[str], None] | None = None) -> list[str]:
    """Run ARGV, log its output, feed each line to EACH; the output's last lines, or BuildError."""
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL)
    env = {**os.environ, "LC_ALL": "C"}  # kbuild's messages, parsed by progress
    with proc.running(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as child:
        assert child.stdout is not None
        for raw in child.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            log.write(line + "\n")
            tail.append(line)
            if each is not None:
                each(line)
        status = child.wait()
    log.flush()
    if status != 0:
        raise BuildError(
            f"`{' '.join(argv)}` failed with status {status} in {cwd}; its last lines:\n"
            + "\n".join(tail)
            + f"\n(full log: {log.name})"
        )
    return list(tail)
