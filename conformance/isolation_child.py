"""The child side of conformance.isolation: one backend, served over a socket.

    python -m conformance.isolation_child NAME --fd FD --parent PID

The parent's first frame is ("start", group, sys.path, options), options
being the backend's --backend-option values. The child loads
only the entry point NAME of that group (the first one, as the registry
does), asks its `conformance_backend()` hookimpls for their backends and
keeps the one whose `info.name` is NAME. It answers ("ready", info) or
("startup-error", one_line, traceback_text) and then serves frames
(vector, profile) -> ("ok", result) | ("raised", type_name, message,
traceback_text, is_memory_error) until EOF. Its stdout and stderr are the
parent's output file, never the channel.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import os
import signal
import socket
import sys
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .isolation import DUMP_SIGNAL, frame, recv_frame

if TYPE_CHECKING:  # imported when needed (load_backend), not at the child's start
    from .contract import Backend

PR_SET_PDEATHSIG = 1

# Built before any item, so that it can be sent when nothing else can be allocated.
OUT_OF_MEMORY = frame(("raised", "MemoryError", "", "", True))


class NoBackend(Exception):
    """Why the entry point produced no backend; args: one line, detail."""


class ProvidesNone(NoBackend):
    """The plugin answers for no backend: legitimate (a plugin of mutants only)."""


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies (Linux), and leave now if it already has."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the parent's EOF is the only way out
    if os.getppid() != parent:
        os._exit(1)


def describe(exc: BaseException) -> str:
    try:
        message = str(exc)
    except BaseException:
        message = "<unprintable>"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def load_backend(name: str, group: str, options: Mapping[str, str] | None = None) -> Backend:
    """The backend NAME from the entry point NAME of `group`, or NoBackend."""
    import importlib.metadata

    import pluggy

    from . import backend_options, hookspecs
    from .contract import is_backend

    entry = next((ep for ep in importlib.metadata.entry_points(group=group) if ep.name == name), None)
    if entry is None:
        raise NoBackend(f"no entry point named {name!r} in group {group}", "")
    where = f"entry point {name} = {entry.value}"
    try:
        plugin = entry.load()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # ImportError, SystemExit at import, ...
        raise NoBackend(f"{where}: {describe(exc)}", traceback.format_exc()) from None
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(plugin, name=name)
    except Exception as exc:
        raise NoBackend(f"{where}: {describe(exc)}", traceback.format_exc()) from None
    others = []
    for impl in pm.hook.conformance_backend.get_hookimpls():
        try:
            backend = impl.function(*backend_options.hook_arguments(impl.argnames, options or {}))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            raise NoBackend(f"{where}: conformance_backend() raised {describe(exc)}", traceback.format_exc()) from None
        if backend is None:
            continue
        if not is_backend(backend):
            raise NoBackend(
                f"{where}: conformance_backend() returned {type(backend).__name__}, "
                "not an object with info: BackendInfo and run()",
                "",
            )
        if backend.info.name == name:
            return backend
        others.append(backend.info.name)
    if not others:
        raise ProvidesNone(f"{where}: provides no backend (its hooks returned None)", "")
    raise NoBackend(f"{where}: no backend named {name!r} (it produced {', '.join(map(repr, others))})", "")


def reply_raised(exc: BaseException, prefix: str = "") -> bytes:
    try:
        message = str(exc)
    except BaseException:
        message = "<unprintable>"
    return frame(("raised", type(exc).__name__, prefix + message, traceback.format_exc(), isinstance(exc, MemoryError)))


def run_one(backend: Backend, request: Any) -> bytes:
    """One item's reply frame; never raises but KeyboardInterrupt."""
    try:
        try:
            vector, profile = request
            result = backend.run(vector, profile)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit and GeneratorExit too: the child serves on
            return reply_raised(exc)
        try:
            return frame(("ok", result))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            return reply_raised(
                exc, f"the backend returned a {type(result).__qualname__} that cannot be sent to the parent: "
            )
    except MemoryError:  # reporting failed for want of memory
        return OUT_OF_MEMORY


def serve(sock: socket.socket, backend: Backend) -> None:
    while True:
        request = recv_frame(sock)
        if request is None:
            return  # the parent closed the channel: exit normally (atexit hooks run)
        reply = run_one(backend, request)
        del request
        sock.sendall(reply)
        del reply


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.isolation_child")
    parser.add_argument("name")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    # Where the parent's timeout asks; crashes dump too (both to the output file).
    faulthandler.enable(all_threads=True)
    faulthandler.register(DUMP_SIGNAL, all_threads=True)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sock = socket.socket(fileno=args.fd)
    sock.set_inheritable(False)  # the backend's own subprocesses do not get the channel
    start = recv_frame(sock)
    if start is None:
        return 0
    _, group, path, options = start
    sys.path[:] = path  # see what the parent sees
    try:
        backend = load_backend(args.name, group, options)
    except NoBackend as err:
        kind = "no-backend" if isinstance(err, ProvidesNone) else "startup-error"
        sock.sendall(frame((kind, *err.args)))
        return 0
    try:
        ready = frame(("ready", backend.info))
    except Exception as exc:
        sock.sendall(frame(("startup-error", f"its info cannot be pickled: {describe(exc)}", traceback.format_exc())))
        return 0
    sock.sendall(ready)
    gc.freeze()  # what start-up made stays: later collections need not walk it
    serve(sock, backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
