"""The live-kernel backend: availability, agreement with the reference, hygiene.

Tests that need a usable /dev/kvm skip with the backend's own reason when
it is unavailable; the unavailable path itself is tested everywhere.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from conformance.load import load_file
from conformance.model import (
    Kind, Level, Mapping, MmuNotifierInvalidate, Observable, Observables, Profile, Root, Slot, State, Step, Vector, Vm,
    VmType,
)
from conformance_kernel import guest, vm
from conformance_kernel.plugin import KernelBackend
from conformance_kernel.vm import GuestError
from conformance_reference.plugin import ReferenceBackend

REPO = Path(__file__).resolve().parent.parent
MISSING = "/nonexistent/kvm"
KERNEL = KernelBackend()
needs_kvm = pytest.mark.skipif(KERNEL.info.unavailable is not None,
                               reason=f"backend kernel unavailable: {KERNEL.info.unavailable}")


def runnable(backend: KernelBackend) -> list[Vector]:
    """Every mainline vector in suites/ the backend can run here."""
    vectors = [v for path in sorted((REPO / "suites").rglob("*.toml")) if path.name != "flags.toml"
               for v in load_file(path).vectors if Profile.MAINLINE in v.profiles]
    return [v for v in vectors if not backend.info.unmet(v.requires | {"profile:mainline"})]


def census() -> tuple[int, int, int]:
    """(open fds, mappings, VM fds) of this process."""
    fds = os.listdir("/proc/self/fd")
    vms = 0
    for fd in fds:
        try:
            vms += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:kvm-vm"
        except OSError:
            pass  # the fd listdir itself used
    with open("/proc/self/maps") as maps:
        return len(fds), sum(1 for _ in maps), vms


# ---------------------------------------------------------------- no KVM needed

def test_guest_jumps_resolve() -> None:
    code = guest.assemble([b"\x90", "a", b"\x90", guest.Jump(0x75, "a"), guest.Jump(0xEB, "b"), b"\x90", "b"])
    assert code == bytes([0x90, 0x90, 0x75, 0xFD, 0xEB, 0x01, 0x90])
    loop = guest.code()
    assert loop[-2:] == bytes([0xEB, (-len(loop)) & 0xFF])  # the last jump goes back to the top


def test_missing_device_is_unavailable_with_reason() -> None:
    backend = KernelBackend(MISSING)
    reason = f"cannot open {MISSING}: No such file or directory"
    assert backend.info.unavailable == reason
    assert backend.info.unmet(frozenset({"vm:DEFAULT"})) == [f"backend kernel unavailable: {reason}"]


def test_missing_device_suite_still_passes() -> None:
    env = dict(os.environ, KVM_CONFORMANCE_DEVICE=MISSING)
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "-rs",
                          "suites/live", "suites/event", "--backend", "kernel", "--backend", "reference"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    reason = f"backend kernel unavailable: cannot open {MISSING}: No such file or directory"
    assert reason in run.stdout
    shown = subprocess.run([sys.executable, "-m", "conformance", "backends"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=60)
    assert f"kernel 0.1.0: unavailable: cannot open {MISSING}: No such file or directory" in shown.stdout


# ---------------------------------------------------------------- live

@needs_kvm
def test_kernel_agrees_with_reference_on_every_runnable_vector() -> None:
    reference = ReferenceBackend()
    vectors = runnable(KERNEL)
    assert len(vectors) >= 30
    for vector in vectors:
        seen = KERNEL.run(vector, Profile.MAINLINE).steps
        model = reference.run(vector, Profile.MAINLINE).steps
        for number, (k, r) in enumerate(zip(seen, model), start=1):
            for what in KERNEL.info.observables:
                got = getattr(k, what.value)
                if got is not None:
                    assert got == getattr(r, what.value), f"{vector.id} step {number}: {what.value}"
        observed = {o for s in seen for o in Observable if getattr(s, o.value) is not None}
        assert observed <= KERNEL.info.observables


@needs_kvm
def test_no_leaks_over_1000_vectors() -> None:
    vectors = runnable(KERNEL)
    small = [v for v in vectors if len(v.state.mappings) <= 16]  # keeps the test to a few seconds
    KERNEL.run(small[0], Profile.MAINLINE)  # warm-up: the CPUID table, ctypes and import caches
    before = census()
    started = time.perf_counter()
    for i in range(1000):
        KERNEL.run(small[i % len(small)], Profile.MAINLINE)
        if i == 199:
            after_200 = census()
    elapsed = time.perf_counter() - started
    after = census()
    assert after[0] == before[0], f"fds {before[0]} -> {after[0]}"
    assert after[2] == before[2] == 0, f"VM fds {before[2]} -> {after[2]}"
    # The allocator may map an arena or two; what must not happen is growth with the vector count.
    assert after[1] <= after_200[1] + 2 and after[1] <= before[1] + 8, f"mappings {before[1]} -> {after_200[1]} -> {after[1]}"
    print(f"1000 vectors in {elapsed:.2f} s; fds {before[0]}, mappings {before[1]} -> {after[1]}")


def big_vector(pages: int) -> Vector:
    """One slot, `pages` 4K leaves, one invalidation: a long populate pass."""
    state = State(vm=Vm(VmType.DEFAULT, tdp_mmu=False, rmaps=True), slots=(Slot(1, 0x10000, pages),),
                  private_ranges=(), mappings=frozenset(Mapping(0, Root.SHADOW, 0x10000 + i, Level.L4K, Kind.SHARED)
                                                        for i in range(pages)))
    return Vector(id="big", description="big", profiles=frozenset({Profile.MAINLINE}), requires=frozenset(),
                  flags=(), state=state, steps=(Step(MmuNotifierInvalidate(0, 0x10000, 0x10001), Observables()),))


@needs_kvm
def test_runaway_pass_fails_its_vector_and_releases_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that outlives its CPU budget ends with GuestError; every fd and mapping goes."""
    big = big_vector(16384)  # ~0.1 s of faults in one pass, against a budget of one tick
    monkeypatch.setattr(vm, "PASS_CPU_SECONDS", 1e-6)
    before = census()
    with pytest.raises(GuestError):
        KERNEL.run(big, Profile.MAINLINE)
    assert census()[0] == before[0] and census()[2] == 0


def interpreter_for_nobody() -> str | None:
    """A Python of this version that uid 65534 can execute, if any."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), shutil.which(version) or "", f"/usr/bin/{version}",
                      f"/usr/local/bin/{version}"):
        path = Path(candidate)
        if candidate and path.exists() and all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents]):
            return candidate
    return None


@needs_kvm
def test_runs_as_an_ordinary_user_without_tracefs() -> None:
    """uid 65534 with a world-accessible KVM device node: the live suite passes, no root needed."""
    if os.geteuid() != 0:
        pytest.skip("needs root to make a device node and drop to uid 65534")
    python = interpreter_for_nobody()
    if python is None or shutil.which("setpriv") is None:
        pytest.skip("no Python interpreter or setpriv that uid 65534 can execute")
    scratch = Path(tempfile.mkdtemp(prefix="kvm-conformance-"))
    try:
        scratch.chmod(0o755)
        node = scratch / "kvm"
        os.mknod(node, 0o666 | stat.S_IFCHR, os.stat(KERNEL.device).st_rdev)
        node.chmod(0o666)
        site = sysconfig.get_paths()["purelib"]
        code = (f"import site, sys; site.addsitedir({site!r}); import pytest; "
                "sys.exit(pytest.main(['-p', 'no:cacheprovider', '-p', 'no:xdist', '-q', 'suites/live', "
                "'--backend', 'kernel']))")
        run = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", code],
                             cwd=REPO, env=dict(os.environ, KVM_CONFORMANCE_DEVICE=str(node), HOME=str(scratch)),
                             capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(scratch)
    if "Permission denied" in run.stderr and "site" in run.stderr:
        pytest.skip("uid 65534 cannot read this checkout or its virtualenv")
    assert run.returncode == 0, run.stdout + run.stderr
    # Vectors for the MMU this host lacks (mmu:tdp on a shadow-MMU host) are skipped with their reason.
    assert re.search(r"^\d+ passed(, \d+ skipped)? in ", run.stdout, re.M), run.stdout
