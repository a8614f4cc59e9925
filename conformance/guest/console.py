"""The guest's serial console as QEMU prints it: logged whole, its last
lines kept for a fault report, the suite's part streamed, and the two
markers that tell "never reached the suite" from "suite running"."""

from __future__ import annotations

import codecs
import collections
import os
import queue
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from .initscript import end_marker, start_marker

TAIL = 40


class Console:
    def __init__(self, nonce: str, log: BinaryIO, stream: TextIO | None, announce: Callable[[str], None]) -> None:
        self.start, self.end = start_marker(nonce), end_marker(nonce)
        self.log, self.stream, self.announce = log, stream, announce
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.partial = ""
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL)
        self.started = False  # the start marker was printed: the suite runs
        self.ended = False

    def feed(self, chunk: bytes) -> None:
        self.log.write(chunk)
        self.log.flush()
        text = self.partial + self.decoder.decode(chunk)
        *complete, self.partial = text.split("\n")
        for line in complete:
            self.line(shown(line))

    def line(self, line: str) -> None:
        self.lines.append(line)
        if self.start in line:
            self.started = True
            self.announce("guest run: the guest reached the suite" + ("; its output follows" if self.stream else ""))
        elif self.end in line:
            self.ended = True
        elif self.started and not self.ended and self.stream is not None:
            self.stream.write(line + "\n")
            self.stream.flush()

    def tail(self) -> list[str]:
        return list(self.lines) + ([shown(self.partial)] if self.partial else [])


def shown(line: str) -> str:
    """What a terminal leaves of a line that carriage returns rewrote (pytest's "collecting ...")."""
    return next((part for part in reversed(line.split("\r")) if part.strip()), "")


@dataclass(frozen=True)
class Limits:
    boot: float  # QEMU start to the suite's start marker
    total: float  # QEMU start to QEMU's exit
    shutdown: float = 30.0  # the suite's end marker to QEMU's exit
    drain: float = 1.0  # QEMU's exit to the end of its output (a helper it forked may hold the pipe)


@dataclass(frozen=True)
class Ending:
    how: str  # "exited", "boot-timeout", "run-timeout" or "shutdown-timeout"
    seconds: float  # from QEMU's start
    boot_seconds: float | None  # QEMU's start to the suite's start


def pump(source: BinaryIO, chunks: queue.Queue[bytes | None]) -> None:
    """Move QEMU's output to the queue until it closes it; None marks the end."""
    try:
        while True:
            chunk = os.read(source.fileno(), 65536)
            if not chunk:
                break
            chunks.put(chunk)
    except OSError:
        pass
    chunks.put(None)


def watch(child: subprocess.Popen[bytes], console: Console, limits: Limits, clock: Callable[[], float]) -> Ending:
    """Feed the console until QEMU exits or a limit passes; the caller stops QEMU."""
    assert child.stdout is not None
    chunks: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=pump, args=(child.stdout, chunks), daemon=True).start()
    begin = clock()
    booted: float | None = None
    ended: float | None = None
    closed = False
    exited: float | None = None
    while True:
        now = clock() - begin
        if exited is None and child.poll() is not None:
            exited = now
        if exited is not None and (closed or now - exited > limits.drain):
            return Ending("exited", now, booted)
        if booted is None and now > limits.boot:
            return Ending("boot-timeout", now, booted)
        if now > limits.total:
            return Ending("run-timeout", now, booted)
        if ended is not None and now - ended > limits.shutdown:
            return Ending("shutdown-timeout", now, booted)
        try:
            chunk = chunks.get(timeout=0.1)
        except queue.Empty:
            continue
        if chunk is None:
            closed = True
            continue
        console.feed(chunk)
        if console.started and booted is None:
            booted = clock() - begin
        if console.ended and ended is None:
            ended = clock() - begin
