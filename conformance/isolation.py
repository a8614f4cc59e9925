"""Run a backend in a child process, so that no backend can take the session down.

`IsolatedBackend(name, limits)` satisfies the `Backend` protocol; the
backend itself is constructed in a persistent child process
(`conformance.isolation_child`) that loads only the entry point `name` of
the group. Each `run()` sends the pickled (vector, profile) over a private
socketpair (length-prefixed pickle frames; the child's stdout and stderr go
to a temporary file) and waits for the reply with `select`, enforcing the
wall-clock and resident-memory limits from here. What can go wrong is one
of three exceptions, all `IsolationError`s with a one-line `.reason` and a
longer `.detail`:

* `StartupError`: the child could not produce the backend;
* `BackendRaised`: the backend raised; the child lives on;
* `Fault`: the child crashed, hung or grew past the memory limit and is
  gone; the next `run()` starts a new one.

No child outlives its parent: a Ctrl-C (or any exception) while waiting
kills it before propagating, `close()` and an `atexit` hook stop it, and
the child asks the kernel to SIGKILL it if the parent dies
(PR_SET_PDEATHSIG). Each child is the leader of its own process group,
which is what gets killed.

Not thread-safe: use one IsolatedBackend from one thread (PR_SET_PDEATHSIG
follows the thread that started the child, so that thread should live as
long as the backend is used).
"""

from __future__ import annotations

import atexit
import io
import math
import os
import pickle
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from . import hookspecs
from .contract import BackendInfo
from .model import Observation, Profile, Vector

CHILD_MODULE = "conformance.isolation_child"
HEADER = struct.Struct("!Q")  # a frame: 8-byte big-endian length, then one pickle
PROTOCOL = pickle.HIGHEST_PROTOCOL
POLL = 0.05  # seconds between checks of the child's liveness and RSS while waiting
CLOSE_GRACE = 2.0  # seconds close() lets the child exit by itself (its atexit hooks) before SIGKILL
REAP_WAIT = 5.0  # seconds to wait for a SIGKILLed child (one in a system call may take a moment)
DUMP_WAIT = 0.3  # seconds to wait for the child's traceback dump before killing it at a timeout
DUMP_SIGNAL = signal.SIGUSR1  # the child's faulthandler dumps every thread's stack on it
TAIL = 4000  # characters of the child's output attached to a report
OUTPUT_LIMIT = 1 << 20  # bytes of child output kept before the file is emptied (between items)


# ---------------------------------------------------------------- frames (shared with the child)


def frame(obj: Any) -> bytes:
    payload = pickle.dumps(obj, PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def recv_exact(sock: socket.socket, size: int) -> bytearray | None:
    """Read exactly `size` bytes, blocking; None on EOF before the first byte."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            if got == 0:
                return None
            raise EOFError(f"channel closed after {got} of {size} bytes")
        got += n
    return buf


def recv_frame(sock: socket.socket) -> Any:
    """One frame's object, blocking (the child's side); None on EOF."""
    header = recv_exact(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    payload = recv_exact(sock, size) if size else bytearray()
    if payload is None:
        raise EOFError("channel closed inside a frame")
    return pickle.loads(payload)


# ---------------------------------------------------------------- limits and errors


def format_bytes(n: int) -> str:
    """2147483648 -> '2 GiB', 1610612736 -> '1.5 GiB', 300 -> '300 B'."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{text} {unit}"


def format_seconds(seconds: float) -> str:
    return f"{seconds:g} s"


@dataclass(frozen=True)
class Limits:
    """What one item may take. `seconds` is wall clock per item, measured
    from the parent (<= 0: no limit); `memory_bytes` caps the child's
    resident set (VmRSS, polled about every 50 ms; None: no limit).
    `start_seconds` bounds the child's start-up: interpreter, the entry
    point's import and the backend's construction (<= 0: no limit)."""

    seconds: float
    memory_bytes: int | None = None
    start_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.memory_bytes is not None and self.memory_bytes <= 0:
            raise ValueError(f"memory_bytes must be positive or None, not {self.memory_bytes}")


class IsolationError(Exception):
    """`reason`: one line for the result matrix; `detail`: the rest (a
    traceback, the tail of the child's output)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail
        if detail and hasattr(self, "add_note"):  # Python 3.11+: shown under the traceback
            self.add_note(detail)

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> Any:
        return type(self), (self.reason, self.detail)


class StartupError(IsolationError):
    """The child could not produce the backend (import, hook, construction, crash, limit)."""


class NoBackend(StartupError):
    """The entry point's plugin provides no backend at all (e.g. only mutants)."""


class Fault(IsolationError):
    """The child died or was killed during an item; the next run() starts a new one.
    `outcome` is what the runner records: `timeout` for the wall-clock limit,
    `crashed` for everything else (a signal, an exit, the memory limit)."""

    @property
    def outcome(self) -> str:
        return "timeout" if self.reason.startswith("killed after") else "crashed"


class BackendRaised(IsolationError):
    """The backend raised in the child; the child is still alive and serves the next item."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        first = message.strip().splitlines()[0] if message.strip() else ""
        super().__init__(f"{type_name}: {first}" if first else type_name, traceback_text)
        self.type_name, self.message, self.traceback_text = type_name, message, traceback_text

    def __reduce__(self) -> Any:
        return type(self), (self.type_name, self.message, self.traceback_text)


def exit_reason(returncode: int | None) -> str:
    if returncode is None:
        return "crashed: exit status unknown"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"crashed: {name}"
    return f"crashed: exited with status {returncode}"


class _NotImported(Exception):
    pass


class _ParentUnpickler(pickle.Unpickler):
    """Unpickles a reply without importing anything: a class from a module
    the parent has not imported (the backend's own, say) is refused, so no
    backend code runs in the parent."""

    def find_class(self, module: str, name: str) -> Any:
        if module not in sys.modules:
            raise _NotImported(f"{module}.{name}")
        return super().find_class(module, name)


def _loads(data: memoryview) -> Any:
    return _ParentUnpickler(io.BytesIO(data)).load()


def _rss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return None
    m = re.search(rb"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(m.group(1)) * 1024 if m else None


# ---------------------------------------------------------------- the proxy

_LIVE: weakref.WeakSet[IsolatedBackend] = weakref.WeakSet()


@atexit.register
def close_all() -> None:
    """Stop every child of this process (also registered with atexit)."""
    for backend in list(_LIVE):
        backend.close()


class IsolatedBackend:
    """A `Backend` whose `run()` executes in a persistent child process.

    The constructor starts the child and takes the backend's `info` from
    it, or raises StartupError. `run()` returns whatever the backend
    returned (unpickled; the caller validates it) or raises an
    IsolationError. After a Fault the next `run()` starts a new child
    transparently (`restarts` counts them); `pid` is the current child's.
    """

    info: BackendInfo

    def __init__(
        self,
        name: str,
        limits: Limits,
        group: str = hookspecs.ENTRY_POINT_GROUP,
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.name, self.limits, self.group = name, limits, group
        self.options = dict(options or {})  # --backend-option values, for every child started
        self.restarts = 0
        self._owner = os.getpid()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._closed = False
        self._output = self._output_file()
        self._mark = 0  # offset in the output file where the current item (or start-up) began
        _LIVE.add(self)
        self.info = self._start()

    # -- public

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def run(self, vector: Vector, profile: Profile) -> Observation:
        if self._closed:
            raise RuntimeError(f"isolated backend {self.name!r} is closed")
        request = frame((vector, profile))  # a vector that cannot be pickled fails here, the child untouched
        if self._proc is None or self._exited():
            if self._proc is not None:
                self._kill()  # died between items: nothing to blame, start afresh
            self._start()
            self.restarts += 1
        self._begin_item()
        try:
            self._send(request, self.limits.seconds)
            reply = self._receive(self.limits.seconds)
        except BaseException:
            # A fault has already killed the child; anything else (Ctrl-C, a
            # SIGALRM deadline around us) leaves an item in flight: kill it too.
            self._kill()
            raise
        # Whatever the backend returned, as an in-process backend's run() may:
        # the runner validates it (validate.problem) before any verdict.
        return cast(Observation, self._result(reply))

    def close(self) -> None:
        """Stop the child: EOF on its channel, SIGKILL after a short grace."""
        self._closed = True
        _LIVE.discard(self)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None and os.getpid() == self._owner:
            self._wait_exit(CLOSE_GRACE)
        self._kill()
        if not self._output.closed:
            self._output.close()

    def __enter__(self) -> IsolatedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"IsolatedBackend({self.name!r}, {self.limits}, pid={self.pid})"

    # -- the child's life

    @staticmethod
    def _output_file() -> io.FileIO:
        # O_APPEND, so that emptying it between items leaves no hole behind
        # the child's file offset; unlinked at once, so nothing is left behind.
        fd, path = tempfile.mkstemp(prefix="conformance-isolation-", suffix=".log")
        try:
            append = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        finally:
            os.close(fd)
            os.unlink(path)
        return io.FileIO(append, "a+")

    def _start(self) -> BackendInfo:
        os.ftruncate(self._output.fileno(), 0)
        self._mark = 0
        parent_end, child_end = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    CHILD_MODULE,
                    self.name,
                    "--fd",
                    str(child_end.fileno()),
                    "--parent",
                    str(os.getpid()),
                ],
                pass_fds=(child_end.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=self._output,
                stderr=self._output,
                start_new_session=True,
            )
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        self._sock = parent_end
        why = f"backend {self.name!r} did not start"
        try:
            self._send(frame(("start", self.group, list(sys.path), self.options)), self.limits.start_seconds)
            reply = self._receive(self.limits.start_seconds)
        except IsolationError as err:
            raise StartupError(f"{why}: {err.reason}", err.detail) from None
        except BaseException:
            self._kill()
            raise
        if isinstance(reply, tuple) and reply[:1] == ("ready",) and isinstance(reply[1], BackendInfo):
            return reply[1]
        self._kill()
        if isinstance(reply, tuple) and reply[:1] == ("no-backend",):
            raise NoBackend(f"{why}: {reply[1]}", "")
        if isinstance(reply, tuple) and reply[:1] == ("startup-error",):
            raise StartupError(f"{why}: {reply[1]}", self._with_output(reply[2]))
        if isinstance(reply, tuple) and reply[:1] == ("raised",):  # its info did not unpickle here
            raise StartupError(f"{why}: {reply[2]}", self._with_output(""))
        raise StartupError(f"{why}: unexpected reply {reply!r:.200}", self._with_output(""))

    def _send(self, data: bytes, seconds: float) -> None:
        assert self._sock is not None
        self._sock.settimeout(seconds if 0 < seconds < math.inf else None)
        try:
            self._sock.sendall(data)
        except TimeoutError:
            self._timeout(seconds)
        except OSError:  # EPIPE, ECONNRESET: the child is gone
            self._died()

    def _receive(self, seconds: float) -> Any:
        """Wait for one reply frame, enforcing the limits; unpickled."""
        sock, proc = self._sock, self._proc
        assert sock is not None and proc is not None
        sock.setblocking(False)
        deadline = time.monotonic() + seconds if seconds > 0 else math.inf
        memory = self.limits.memory_bytes
        buf = bytearray()
        total: int | None = None
        while True:
            wait = min(POLL, deadline - time.monotonic())
            if wait <= 0:
                self._timeout(seconds)
            if select.select([sock], [], [], wait)[0]:
                try:
                    chunk = sock.recv(min(max(65536, (total or 0) - len(buf)), 1 << 22))
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    self._died()
                buf += chunk
                if total is None and len(buf) >= HEADER.size:
                    total = HEADER.size + HEADER.unpack_from(buf)[0]
                if total is not None and len(buf) >= total:
                    if len(buf) > total:
                        self._protocol_error(f"{len(buf) - total} bytes after the reply")
                    return self._decode(memoryview(buf)[HEADER.size :])
                continue
            if self._exited():
                self._died()
            if memory is not None:
                rss = _rss(proc.pid)
                if rss is not None and rss > memory:
                    self._kill()
                    raise Fault(
                        f"exceeded {format_bytes(memory)}", self._with_output(f"resident set {format_bytes(rss)}")
                    )

    def _decode(self, payload: memoryview) -> Any:
        try:
            return _loads(payload)
        except _NotImported as exc:
            return (
                "raised",
                "UnpicklingError",
                f"the reply holds an object of class {exc}, from a module the parent has not imported "
                "(a backend's info and results are conformance types)",
                "",
                False,
            )
        except Exception as exc:
            return (
                "raised",
                type(exc).__name__,
                f"the backend's result cannot be unpickled in the parent: {exc}",
                "",
                False,
            )

    def _result(self, reply: Any) -> object:
        if isinstance(reply, tuple) and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        if isinstance(reply, tuple) and len(reply) == 5 and reply[0] == "raised":
            _, type_name, message, traceback_text, memory_error = reply
            if memory_error and self.limits.memory_bytes is not None:
                self._kill()
                raise Fault(f"exceeded {format_bytes(self.limits.memory_bytes)}", traceback_text)
            raise BackendRaised(type_name, message, traceback_text)
        self._kill()
        raise Fault(f"crashed: protocol error: unexpected reply {reply!r:.200}")

    def _protocol_error(self, what: str) -> None:
        self._kill()
        raise Fault(f"crashed: protocol error: {what}", self._with_output(""))

    def _timeout(self, seconds: float) -> None:
        proc = self._proc
        if proc is not None and not self._exited():
            # Ask the child's faulthandler where every thread is (it answers
            # even while a C call holds the GIL), then kill it.
            size = self._output_size()
            try:
                os.kill(proc.pid, DUMP_SIGNAL)
            except OSError:
                pass
            end = time.monotonic() + DUMP_WAIT
            while time.monotonic() < end and self._output_size() == size:
                time.sleep(0.01)
            time.sleep(0.02)  # let the dump finish
        self._kill()
        raise Fault(f"killed after {format_seconds(seconds)}", self._with_output(""))

    def _died(self) -> None:
        # EOF on the channel comes just before the exit: give it a moment.
        exited = self._wait_exit(1.0)
        proc = self._proc
        self._kill()
        reason = exit_reason(proc.returncode if proc is not None else None) if exited else "crashed: closed its channel"
        raise Fault(reason, self._with_output(""))

    def _exited(self) -> bool:
        """Whether the child has exited, without reaping it (so that its
        process group id stays reserved until we have killed the group)."""
        if self._proc is None:
            return True
        try:
            return os.waitid(os.P_PID, self._proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:  # reaped by someone else
            return True

    def _wait_exit(self, seconds: float) -> bool:
        end = time.monotonic() + seconds
        while not self._exited():
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)
        return True

    def _kill(self) -> None:
        """SIGKILL the child's process group and reap the child."""
        proc, sock = self._proc, self._sock
        if sock is not None:
            sock.close()
        if proc is not None and os.getpid() == self._owner:  # a forked copy of the parent owns no child
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self._proc = self._sock = None  # only now: a Ctrl-C above leaves it to the next _kill()
        if proc is None or os.getpid() != self._owner:
            return
        try:
            proc.wait(REAP_WAIT)
        except subprocess.TimeoutExpired:
            pass  # stuck in the kernel; subprocess reaps it later

    # -- the child's output

    def _begin_item(self) -> None:
        size = self._output_size()
        if size > OUTPUT_LIMIT:
            os.ftruncate(self._output.fileno(), 0)
            size = 0
        self._mark = size

    def _output_size(self) -> int:
        return os.fstat(self._output.fileno()).st_size

    def output_tail(self) -> str:
        """What the child wrote since the current item (or its start-up) began, at most TAIL characters."""
        if self._output.closed:
            return ""
        end = self._output_size()
        start = max(self._mark, end - TAIL) if end >= self._mark else 0
        text = os.pread(self._output.fileno(), end - start, start).decode("utf-8", "replace")
        return ("..." if start > self._mark else "") + text

    def _with_output(self, detail: str) -> str:
        tail = self.output_tail().rstrip()
        parts = [detail.rstrip()] if detail.strip() else []
        if tail:
            parts.append(f"child output:\n{tail}")
        return "\n".join(parts)
