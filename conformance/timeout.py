"""A per-item deadline so a hanging backend fails its own item only."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class BackendTimeout(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise BackendTimeout in the main thread after `seconds` (SIGALRM).

    Where signals are unavailable (another thread, Windows) the block runs
    without a deadline rather than failing.
    """
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise BackendTimeout(f"backend did not answer within {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
