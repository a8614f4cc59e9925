"""Progress of a kernel build read from kbuild's quiet output: one line at
most every few seconds, plain text so CI logs show it too."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

# kbuild prints "  CC      kernel/fork.o" for each object it compiles.
OBJECT = re.compile(r"^\s+(?:CC|AS)\s+(?:\[M\]\s+)?\S+\.o\s*$")


def is_object(line: str) -> bool:
    return OBJECT.match(line) is not None


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


@dataclass(frozen=True)
class Snapshot:
    done: int
    expected: int  # an estimate: the last measured build, or the fragment's figure
    elapsed: float

    def line(self) -> str:
        head = f"guest build: {self.done}/~{self.expected} objects"
        if self.done < 20:  # too early for a rate
            return f"{head}, {duration(self.elapsed)} elapsed"
        if self.done >= self.expected:
            return f"{head}, {duration(self.elapsed)} elapsed, linking soon"
        left = self.elapsed * (self.expected - self.done) / self.done
        return (
            f"{head} ({100 * self.done // self.expected}%), {duration(self.elapsed)} elapsed, "
            f"about {duration(left)} left"
        )


class Meter:
    """Counts objects and says when a progress line is due."""

    def __init__(self, expected: int, clock: Callable[[], float], every: float = 5.0) -> None:
        self.expected, self.clock, self.every = expected, clock, every
        self.start = clock()
        self.done = 0
        self.last = self.start

    def feed(self, line: str) -> str | None:
        """The progress line to show after LINE, if one is due."""
        if is_object(line):
            self.done += 1
        now = self.clock()
        if now - self.last < self.every:
            return None
        self.last = now
        return self.snapshot().line()

    def snapshot(self) -> Snapshot:
        return Snapshot(self.done, self.expected, self.clock() - self.start)
