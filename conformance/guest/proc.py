"""Child processes that cannot outlive the runner: each in its own process
group (killed as a whole), and told by the kernel to die with its parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
    """A preexec function that arms PR_SET_PDEATHSIG, or None off Linux.

    libc is loaded here, before the fork: the child only calls into it.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ARGV as the leader of a new process group. Call from the main
    thread: the death signal follows the thread that forked."""
    return subprocess.Popen(list(argv), start_new_session=True, preexec_fn=die_with_parent(), **popen)


def stop(child: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """End CHILD's whole process group: SIGTERM, then SIGKILL for whatever is
    left after GRACE seconds (helpers the leader forked included)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break  # nobody left in the group
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    child.wait()


@contextlib.contextmanager
def running(argv: Sequence[str], **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """spawn(), and stop() however the block ends."""
    child = spawn(argv, **popen)
    try:
        yield child
    finally:
        stop(child)


class Interrupted(Exception):
    """SIGTERM (or SIGHUP) reached the runner; raised so that cleanup runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class TerminationAsException:
    """While active, SIGTERM and SIGHUP raise Interrupted in the main thread."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self) -> TerminationAsException:
        self.previous = {s: signal.signal(s, self.raise_it) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    @staticmethod
    def raise_it(signum: int, frame: object) -> None:
        raise Interrupted(signum)
