"""conformance.isolation: a backend in a child process cannot take the session down.

The fault backends are an out-of-tree distribution written into a temporary
directory (a dist-info with entry_points.txt, as tests/test_plugin.py does);
the child sees it because it takes the parent's sys.path. One backend,
`faulty`, picks its misbehaviour from the vector's description; the others
fail while starting. Every test is bounded: by its Limits and by a deadline
around it in this (parent) process, which only ever waits in select.
"""
from __future__ import annotations

import glob
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from conformance.isolation import (
    BackendRaised, Fault, IsolatedBackend, IsolationError, Limits, StartupError, format_bytes,
)
from conformance.load import load_file
from conformance.model import Observation, Profile, Vector
from conformance.timeout import deadline
from conformance_reference.plugin import ReferenceBackend

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20

FAULTY = textwrap.dedent('''\
    import ctypes, os, sys, threading, time
    from dataclasses import replace
    from conformance.contract import BackendInfo
    from conformance.hookspecs import hookimpl
    from conformance_reference.plugin import ReferenceBackend

    class Foreign:
        pass

    class Faulty(ReferenceBackend):
        info = replace(ReferenceBackend.info, name="faulty", version="0.0")

        def run(self, vector, profile):
            mode = vector.description
            if mode == "abort":
                os.abort()
            if mode == "segv":
                ctypes.string_at(0)
            if mode == "spin":  # one C call that holds the GIL and never looks at signals
                sum(range(10 ** 12))
            if mode == "sleep":
                time.sleep(1000)
            if mode == "exit3":
                os._exit(3)
            if mode == "sysexit":
                sys.exit(4)
            if mode == "raise":
                raise RuntimeError("acme firmware fell over\\nsecond line")
            if mode == "grow":
                hoard = []
                while True:
                    hoard.append(b"x" * (16 << 20))
            if mode == "memoryerror":
                bytearray(1 << 60)
            if mode == "unpicklable":
                return threading.Lock()
            if mode == "foreign":
                return Foreign()
            if mode == "noisy":
                print("\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x05noise on stdout")
                print("noise on stderr", file=sys.stderr)
                os.write(1, b"raw fd 1\\n")
            return super().run(vector, profile)

    @hookimpl
    def conformance_backend():
        return Faulty()
    ''')

# Backends that cannot start: entry point name -> module source.
BROKEN = {
    "broken-import": "import acme_missing_dependency\n",
    "exit-at-import": "raise SystemExit(2)\n",
    "hook-raises": textwrap.dedent('''\
        from conformance.hookspecs import hookimpl

        @hookimpl
        def conformance_backend():
            raise RuntimeError("no licence")
        '''),
    "wrong-type": textwrap.dedent('''\
        from conformance.hookspecs import hookimpl

        @hookimpl
        def conformance_backend():
            return 42
        '''),
    "wrong-name": textwrap.dedent('''\
        from dataclasses import replace
        from conformance.hookspecs import hookimpl
        from conformance_reference.plugin import ReferenceBackend

        class Other(ReferenceBackend):
            info = replace(ReferenceBackend.info, name="other")

        @hookimpl
        def conformance_backend():
            return Other()
        '''),
    "segv-at-init": textwrap.dedent('''\
        import ctypes
        from conformance.hookspecs import hookimpl

        @hookimpl
        def conformance_backend():
            ctypes.string_at(0)
        '''),
    "slow-start": "import time\ntime.sleep(1000)\n",
}


def module_name(entry: str) -> str:
    return "acme_" + entry.replace("-", "_")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    (site / "faulty_backend.py").write_text(FAULTY)
    for entry, source in BROKEN.items():
        (site / f"{module_name(entry)}.py").write_text(source)
    dist = site / "acme_faults-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-faults\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kvm_mmu_conformance.backends]\nfaulty = faulty_backend\n" + "".join(
        f"{entry} = {module_name(entry)}\n" for entry in BROKEN))
    return site


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has died; only its parent's reaping is left


def isolation_children() -> list[int]:
    """Live isolation children of this process."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(stat[:-4] + "cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z" and b"conformance.isolation_child" in cmdline:
            found.append(int(stat.split("/")[2]))
    return found


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def isolated(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., IsolatedBackend]]:
    """Make isolated backends with the fault distribution on sys.path; at
    the end close them and check that no child of this process is left."""
    monkeypatch.syspath_prepend(str(site))
    made: list[IsolatedBackend] = []

    def make(name: str = "faulty", seconds: float = 10.0, memory: Optional[int] = None,
             start_seconds: float = 20.0) -> IsolatedBackend:
        backend = IsolatedBackend(name, Limits(seconds, memory, start_seconds))
        made.append(backend)
        return backend

    with deadline(25):  # the parent waits in select: SIGALRM bounds every test
        yield make
    for backend in made:
        backend.close()
    assert isolation_children() == []


@pytest.fixture(scope="module")
def vector() -> Vector:
    return load_file(REPO / "suites" / "call" / "zap-all.toml").vectors[0]


def item(vector: Vector, mode: str) -> tuple[Vector, Profile]:
    return replace(vector, description=mode), sorted(vector.profiles)[0]


def expected(vector: Vector) -> Observation:
    return ReferenceBackend().run(*item(vector, "ok"))


def fault(backend: IsolatedBackend, vector: Vector, mode: str, kind: type = Fault) -> IsolationError:
    """Run one faulting item; check its kind and that the old child is gone."""
    pid = backend.pid
    assert pid is not None and alive(pid)
    with pytest.raises(kind) as info:
        backend.run(*item(vector, mode))
    if kind is Fault:
        assert backend.pid is None and not alive(pid)
    else:
        assert backend.pid == pid and alive(pid)  # the child serves on
    assert str(info.value) == info.value.reason and "\n" not in info.value.reason
    return info.value


# ---------------------------------------------------------------- the backend works

def test_vectors_round_trip_through_pickle() -> None:
    vectors = [v for path in sorted((REPO / "suites").rglob("*.toml")) if path.name != "flags.toml"
               for v in load_file(path).vectors]
    assert len(vectors) > 1000
    for v in vectors:
        copy = pickle.loads(pickle.dumps((v, Profile.MAINLINE), pickle.HIGHEST_PROTOCOL))
        assert copy == (v, Profile.MAINLINE) and hash(copy[0]) == hash(v)
        assert copy[1] is Profile.MAINLINE


def test_isolated_reference_observes_what_the_in_process_one_does(isolated: Callable[..., IsolatedBackend]) -> None:
    backend = isolated("reference")
    assert backend.info == ReferenceBackend.info
    in_process = ReferenceBackend()
    paths = [path for path in sorted((REPO / "suites").rglob("*.toml")) if path.name != "flags.toml"]
    # Not the few vectors that split a 1G leaf into 262,144 4K leaves: pickling
    # one costs seconds (it round-trips in the test above).
    items = [(v, p) for path in paths for v in load_file(path).vectors for p in sorted(v.profiles)
             if sum(len(s.expect.mappings or ()) for s in v.steps) < 10_000]
    assert len(items) > 1700
    pid = backend.pid
    for v, p in items:
        assert backend.run(v, p) == in_process.run(v, p), v.id
    assert backend.pid == pid and backend.restarts == 0


def test_backend_output_stays_off_the_channel(isolated: Callable[..., IsolatedBackend], vector: Vector) -> None:
    backend = isolated()
    assert backend.run(*item(vector, "noisy")) == expected(vector)
    tail = backend.output_tail()
    assert "noise on stdout" in tail and "noise on stderr" in tail and "raw fd 1" in tail


@pytest.mark.parametrize("seconds", [0, math.inf])
def test_a_limit_of_zero_or_infinity_is_none(isolated: Callable[..., IsolatedBackend], vector: Vector,
                                             seconds: float) -> None:
    assert isolated(seconds=seconds).run(*item(vector, "ok")) == expected(vector)


def test_close_lets_the_child_exit_by_itself(isolated: Callable[..., IsolatedBackend]) -> None:
    backend = isolated()
    proc = backend._proc
    assert proc is not None
    started = time.monotonic()
    backend.close()
    assert proc.returncode == 0 and time.monotonic() - started < 1.5  # EOF, not SIGKILL
    with pytest.raises(RuntimeError, match="closed"):
        backend.run(*item(load_file(REPO / "suites" / "call" / "zap-all.toml").vectors[0], "ok"))


# ---------------------------------------------------------------- the child dies

@pytest.mark.parametrize("mode, reason, output", [
    ("abort", "crashed: SIGABRT", "Fatal Python error: Aborted"),
    ("segv", "crashed: SIGSEGV", "Fatal Python error: Segmentation fault"),
    ("exit3", "crashed: exited with status 3", ""),
])
def test_a_crash_is_a_fault_and_the_next_item_restarts(isolated: Callable[..., IsolatedBackend], vector: Vector,
                                                       mode: str, reason: str, output: str) -> None:
    backend = isolated()
    err = fault(backend, vector, mode)
    assert err.reason == reason
    assert output in err.detail
    if output:  # faulthandler's stack names the backend's line
        assert "faulty_backend.py" in err.detail and "in run" in err.detail
    assert backend.run(*item(vector, "ok")) == expected(vector)
    assert backend.restarts == 1 and backend.pid is not None


@pytest.mark.parametrize("mode", ["sleep", "spin"])
def test_a_hang_is_killed_after_the_limit(isolated: Callable[..., IsolatedBackend], vector: Vector,
                                          mode: str) -> None:
    backend = isolated(seconds=1)
    started = time.monotonic()
    err = fault(backend, vector, mode)
    assert err.reason == "killed after 1 s"
    assert 1 <= time.monotonic() - started < 4
    # Where it hung, from the child's faulthandler (it answers inside a C call holding the GIL).
    assert "faulty_backend.py" in err.detail and "in run" in err.detail
    assert backend.run(*item(vector, "ok")) == expected(vector)


def test_the_spin_holds_the_gil_so_sigalrm_cannot_stop_it() -> None:
    """Why isolation is needed: the in-process deadline does not fire inside
    the C call. (A catastrophic regex would not do: _sre checks for signals.)"""
    script = textwrap.dedent('''\
        import sys
        from conformance.timeout import BackendTimeout, deadline
        try:
            with deadline(0.2):
                sum(range(10 ** 12))
        except BackendTimeout:
            sys.exit("interrupted")
        ''')
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(1.5)
    finally:
        proc.kill()
        proc.wait()


def test_growing_past_the_memory_limit_is_a_fault(isolated: Callable[..., IsolatedBackend], vector: Vector) -> None:
    backend = isolated(memory=256 * MiB)
    err = fault(backend, vector, "grow")
    assert err.reason == "exceeded 256 MiB" and "resident set" in err.detail
    assert backend.run(*item(vector, "ok")) == expected(vector)


def test_memory_error_is_the_memory_fault_when_limited(isolated: Callable[..., IsolatedBackend],
                                                       vector: Vector) -> None:
    backend = isolated(memory=2 << 30)
    err = fault(backend, vector, "memoryerror")
    assert err.reason == "exceeded 2 GiB" and "MemoryError" in err.detail


def test_memory_error_is_an_exception_when_unlimited(isolated: Callable[..., IsolatedBackend],
                                                     vector: Vector) -> None:
    err = fault(isolated(), vector, "memoryerror", BackendRaised)
    assert err.reason == "MemoryError"


# ---------------------------------------------------------------- the backend raises

def test_an_exception_is_reported_and_the_child_serves_on(isolated: Callable[..., IsolatedBackend],
                                                          vector: Vector) -> None:
    backend = isolated()
    pid = backend.pid
    err = fault(backend, vector, "raise", BackendRaised)
    assert isinstance(err, BackendRaised)
    assert err.reason == "RuntimeError: acme firmware fell over"
    assert err.type_name == "RuntimeError" and err.message == "acme firmware fell over\nsecond line"
    assert 'faulty_backend.py", line' in err.traceback_text and err.detail == err.traceback_text
    assert backend.run(*item(vector, "ok")) == expected(vector)
    assert backend.pid == pid and backend.restarts == 0


def test_system_exit_in_run_is_an_exception(isolated: Callable[..., IsolatedBackend], vector: Vector) -> None:
    backend = isolated()
    assert fault(backend, vector, "sysexit", BackendRaised).reason == "SystemExit: 4"
    assert backend.run(*item(vector, "ok")) == expected(vector)


def test_an_unpicklable_result_is_the_backends_error(isolated: Callable[..., IsolatedBackend],
                                                     vector: Vector) -> None:
    err = fault(isolated(), vector, "unpicklable", BackendRaised)
    assert err.reason.startswith("TypeError: the backend returned a lock that cannot be sent to the parent: ")


def test_a_result_of_the_backends_own_class_is_not_imported_here(isolated: Callable[..., IsolatedBackend],
                                                                 vector: Vector) -> None:
    err = fault(isolated(), vector, "foreign", BackendRaised)
    assert err.reason.startswith("UnpicklingError: the reply holds an object of class faulty_backend.Foreign, ")
    assert "faulty_backend" not in sys.modules


# ---------------------------------------------------------------- start-up

@pytest.mark.parametrize("name, reason", [
    ("broken-import", "entry point broken-import = acme_broken_import: "
                      "ModuleNotFoundError: No module named 'acme_missing_dependency'"),
    ("exit-at-import", "entry point exit-at-import = acme_exit_at_import: SystemExit: 2"),
    ("hook-raises", "entry point hook-raises = acme_hook_raises: conformance_backend() raised "
                    "RuntimeError: no licence"),
    ("wrong-type", "entry point wrong-type = acme_wrong_type: conformance_backend() returned int, "
                   "not an object with info: BackendInfo and run()"),
    ("wrong-name", "entry point wrong-name = acme_wrong_name: no backend named 'wrong-name' (it produced 'other')"),
    ("segv-at-init", "crashed: SIGSEGV"),
    ("no-such-backend", "no entry point named 'no-such-backend' in group kvm_mmu_conformance.backends"),
])
def test_a_backend_that_cannot_start_is_a_startup_error(isolated: Callable[..., IsolatedBackend],
                                                        name: str, reason: str) -> None:
    with pytest.raises(StartupError) as info:
        isolated(name)
    assert info.value.reason == f"backend {name!r} did not start: {reason}"
    if name in ("broken-import", "exit-at-import", "hook-raises"):
        assert "Traceback" in info.value.detail
    if name == "segv-at-init":
        assert "Fatal Python error: Segmentation fault" in info.value.detail
    assert isolation_children() == []


def test_a_start_that_hangs_is_killed(isolated: Callable[..., IsolatedBackend]) -> None:
    with pytest.raises(StartupError) as info:
        isolated("slow-start", start_seconds=1)
    assert info.value.reason == "backend 'slow-start' did not start: killed after 1 s"
    assert 'acme_slow_start.py", line 2 in <module>' in info.value.detail  # faulthandler's dump
    assert isolation_children() == []


# ---------------------------------------------------------------- no child outlives the parent

PARENT = textwrap.dedent('''\
    import sys
    from dataclasses import replace
    from conformance.isolation import IsolatedBackend, Limits
    from conformance.load import load_file

    vector = load_file(sys.argv[1]).vectors[0]
    backend = IsolatedBackend("faulty", Limits(60))
    print(backend.pid, flush=True)
    backend.run(replace(vector, description="sleep"), sorted(vector.profiles)[0])
    ''')


def start_parent(site: Path) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(REPO / "suites" / "call" / "zap-all.toml")],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert alive(child)
    time.sleep(0.3)  # the item is under way
    return parent, child


def test_ctrl_c_in_the_parent_kills_the_child(site: Path) -> None:
    parent, child = start_parent(site)
    try:
        parent.send_signal(signal.SIGINT)
        _, err = parent.communicate(timeout=10)
    finally:
        parent.kill()
    assert "KeyboardInterrupt" in err and parent.returncode != 0
    assert not alive(child)  # reaped by the parent before it left


def test_a_killed_parent_takes_its_child_along(site: Path) -> None:
    parent, child = start_parent(site)
    parent.kill()
    parent.communicate(timeout=10)
    assert wait_gone(child)  # PR_SET_PDEATHSIG


def test_memory_sizes_read_well() -> None:
    assert [format_bytes(n) for n in (2 << 30, 3 << 29, 256 * MiB, 300, 10 ** 9)] == [
        "2 GiB", "1.5 GiB", "256 MiB", "300 B", "953.7 MiB"]
