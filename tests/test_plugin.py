"""The plugin machinery, end to end: pytest runs in a subprocess on a scratch
project whose backends register through the real entry-point mechanism."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

VECTOR = textwrap.dedent('''\
    [suite]
    format = 1
    description = "scratch suite"

    [[vector]]
    id = "tdx-notifier"
    description = "TDX notifier keeps the mirror"
    profiles = ["mainline"]
    flags = ["basic"]

    [vector.vm]
    type = "TDX"
    tdp_mmu = true

    [[vector.slot]]
    id = 1
    base_gfn = 0x200
    npages = 0x400
    flags = ["GUEST_MEMFD"]

    [vector.initial]
    mappings = [
      { root = "direct", gfn = 0x8000000200, level = "2M" },
      { root = "mirror", gfn = 0x300, level = "4K" },
    ]

    [[vector.step]]
    op = "unmap_gfn_range"
    slot = 1
    start = 0x200
    end = 0x600
    attr_filter = ["SHARED"]

    [vector.step.expect]
    mappings = [
      { root = "mirror", gfn = 0x300, level = "4K" },
    ]
    flush = true
    decision = "shared"
    warns = []
    ''')

FLAGS = textwrap.dedent('''\
    [flags.basic]
    description = "plain behaviour"
    bug_class = "basic"
    kernel = ["kvm_unmap_gfn_range"]
    ''')

# Vendor backends shaped like a third party's plugin module.
VENDOR = textwrap.dedent('''\
    import ctypes
    import os
    import time
    from dataclasses import replace
    from conformance.contract import BackendInfo, KnownFailure
    from conformance.hookspecs import hookimpl
    from conformance.model import Layer, Observable, Profile, VmType
    from conformance_reference.plugin import ReferenceBackend

    MODE = "{mode}"

    class Vendor(ReferenceBackend):
        info = BackendInfo(
            name="acme", version="9.9", profiles=frozenset(Profile), layers=frozenset(Layer),
            vm_types=frozenset(VmType),
            observables=frozenset(Observable) - ({{Observable.DECISION}} if MODE == "blind" else set()),
            capabilities=ReferenceBackend.info.capabilities - ({{"mmu:tdp"}} if MODE == "no-tdp" else set()),
            explanations={{"mmu:tdp": "acme silicon has no TDP"}} if MODE == "no-tdp" else {{}},
            known_failures=(KnownFailure("scratch::tdx-*", "acme drops flushes", "mainline"),)
            if MODE in ("known-fail", "known-pass") else (),
            where={{"machine": "acme lab", "silicon": "A0"}})

        def run(self, vector, profile):
            if MODE == "crash":
                raise RuntimeError("acme firmware fell over")
            if MODE == "hang":
                time.sleep(30)
            if MODE == "abort":
                os.abort()
            if MODE == "segv":
                ctypes.string_at(0)
            if MODE == "spin":  # one C call that never checks for signals and holds the GIL
                sum(range(10 ** 13))
            if MODE == "exit":
                os._exit(3)
            if MODE == "sysexit":
                raise SystemExit(2)
            if MODE == "memory":
                hog = []
                while True:
                    hog.append(bytearray(64 << 20))
            if MODE == "none":
                return None
            if MODE == "bad-flush":
                observation = super().run(vector, profile)
                return replace(observation, steps=tuple(replace(s, flush="yes") for s in observation.steps))
            observation = super().run(vector, profile)
            if MODE in ("drops-flush", "known-fail"):
                steps = tuple(replace(s, flush=False) for s in observation.steps)
                observation = replace(observation, steps=steps)
            return observation

    @hookimpl
    def conformance_backend():
        return Vendor()
    ''')


def scratch_project(tmp_path: Path, mode: str, extra_files: dict[str, str] | None = None) -> dict[str, str]:
    """A directory with suites/ and a vendor distribution on PYTHONPATH."""
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "flags.toml").write_text(FLAGS)
    (tmp_path / "suites" / "scratch.toml").write_text(VECTOR)
    for name, text in (extra_files or {}).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_backend.py").write_text(VENDOR.format(mode=mode))
    dist = site / "acme_mmu-9.9.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-mmu\nVersion: 9.9\n")
    (dist / "entry_points.txt").write_text("[kvm_mmu_conformance.backends]\nacme = acme_backend\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)]
                                        + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def run_pytest(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_vendor_backend_is_discovered_and_run(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme", "--backend", "reference")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASSED suites/scratch.toml::tdx-notifier[acme:mainline]" in out.stdout
    assert "PASSED suites/scratch.toml::tdx-notifier[reference:mainline]" in out.stdout
    assert "conformance matrix (backend x result)" in out.stdout
    assert "acme 9.9" in out.stdout


def test_failure_shows_diff_and_rerun_command(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "drops-flush")
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme")
    assert out.returncode == 1
    assert "flush: expected true, observed false" in out.stdout
    assert (f"re-run: {sys.executable} -m pytest -p no:xdist "
            f"'{tmp_path}/suites/scratch.toml::tdx-notifier[acme:mainline]'") in out.stdout
    assert "suites/scratch.toml:5" in out.stdout  # the vector's line


def test_crashing_backend_fails_only_its_items(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "crash")
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme", "--backend", "reference")
    assert out.returncode == 1
    assert "backend acme raised RuntimeError: acme firmware fell over" in out.stdout
    assert "PASSED suites/scratch.toml::tdx-notifier[reference:mainline]" in out.stdout


def test_hanging_backend_times_out(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "hang")
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme", "--conformance-timeout", "0.5")
    assert out.returncode == 1
    assert "backend acme killed after 0.5 s" in out.stdout  # isolated: the limit is enforced from outside


def test_unmet_requirement_skips_with_reason(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "no-tdp")
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme")
    assert out.returncode == 0
    assert "unmet: mmu:tdp: acme silicon has no TDP" in out.stdout


def test_unobservable_is_ignored_visibly(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "blind")
    report = tmp_path / "out.json"
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme", "--conformance-json", str(report))
    assert out.returncode == 0, out.stdout
    assert "ignored on acme/mainline: decision (not declared observable by the backend) in 1 item(s)" in out.stdout
    assert "cannot observe: step 1 (unmap_gfn_range, line 27): decision (not declared" in out.stdout
    [result] = json.loads(report.read_text())["results"]
    assert result["outcome"] == "passed" and result["ignored"] == [
        "step 1 (unmap_gfn_range, line 27): decision (not declared observable by the backend)"]


def _second_vector(text: str) -> str:
    """The file's [[vector]] again, under another id."""
    vector = text[text.index("[[vector]]"):]
    return vector.replace('id = "tdx-notifier"', 'id = "tdx-notifier-again"')


def test_bad_vector_is_one_error_item_and_the_rest_of_its_file_runs(tmp_path: Path) -> None:
    broken = VECTOR.replace('type = "TDX"', 'type = "TDZ"') + "\n" + _second_vector(VECTOR)
    env = scratch_project(tmp_path, "ok", {"suites/broken.toml": broken})
    report = tmp_path / "out.json"
    out = run_pytest(tmp_path, env, "suites", "--backend", "reference", "--conformance-json", str(report))
    assert out.returncode != 0
    assert "suites/broken.toml:12: vector[0].vm.type: unknown VmType 'TDZ'" in out.stdout
    assert "FAILED suites/broken.toml::tdx-notifier - " in out.stdout
    assert "PASSED suites/broken.toml::tdx-notifier-again[reference:mainline]" in out.stdout
    assert "PASSED suites/scratch.toml::tdx-notifier[reference:mainline]" in out.stdout
    errors = [r for r in json.loads(report.read_text())["results"] if r["outcome"] == "error"]
    assert [(r["vector"], r["backend"]) for r in errors] == [("broken::tdx-notifier", "loader")]


def test_unreadable_file_is_one_collection_error_and_the_rest_runs(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok", {"suites/broken.toml": VECTOR.replace("[suite]", "[suite", 1)})
    out = run_pytest(tmp_path, env, "suites", "--backend", "reference")
    assert out.returncode != 0
    assert "suites/broken.toml:1: <toml>" in out.stdout
    assert "PASSED suites/scratch.toml::tdx-notifier[reference:mainline]" in out.stdout
    assert "vector file not loaded: suites/broken.toml" in out.stdout


def test_vector_ids_are_unique_across_files(tmp_path: Path) -> None:
    """A nested flag registry starts a second suite root, where a file can
    repeat an id: the first keeps it, the second is an error item."""
    env = scratch_project(tmp_path, "ok")
    sub = tmp_path / "suites" / "sub"
    sub.mkdir()
    (sub / "flags.toml").write_text((tmp_path / "suites" / "flags.toml").read_text())
    (sub / "scratch.toml").write_text(VECTOR)
    (tmp_path / "suites" / "linked.toml").symlink_to(tmp_path / "suites" / "scratch.toml")
    out = run_pytest(tmp_path, env, "suites", "--backend", "reference")
    assert out.returncode == 1, out.stdout
    assert "PASSED suites/scratch.toml::tdx-notifier[reference:mainline]" in out.stdout
    assert "duplicate vector id 'scratch::tdx-notifier': also at" in out.stdout
    assert "FAILED suites/sub/scratch.toml::tdx-notifier - " in out.stdout
    assert "linked.toml" not in out.stdout  # the same real file is collected once


def test_symlink_loop_is_followed_once_with_a_warning(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    (tmp_path / "suites" / "loop").symlink_to(tmp_path / "suites", target_is_directory=True)
    out = run_pytest(tmp_path, env, "suites", "--backend", "reference")
    assert out.returncode == 0, out.stdout
    assert out.stdout.count("::tdx-notifier[reference:mainline]") == 1, out.stdout
    assert "a symlink loop" in out.stdout


def test_non_utf8_file_name_is_reported_not_fatal(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    bad = os.path.join(os.fsencode(tmp_path / "suites"), b"bad\xff.toml")
    with open(bad, "wb") as out_file:
        out_file.write(VECTOR.encode())
    out = run_pytest(tmp_path, env, "suites", "--backend", "reference", "-p", "cacheprovider")
    assert "not valid UTF-8" in out.stdout, out.stdout
    assert "conformance matrix" in out.stdout and "PASSED suites/scratch.toml::tdx-notifier" in out.stdout


def test_xdist_collects_the_same_items(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    # Name the backends: others installed beside the reference (rust) would add items.
    out = run_pytest(tmp_path, env, "suites", "-n", "2", "--backend", "acme", "--backend", "reference")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 passed" in out.stdout
    assert re.search(r"^acme +mainline +1 +0 +0 +0 +0 +0 +0 +0$", out.stdout, re.M), out.stdout


def test_each_result_says_where_it_ran(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    report = tmp_path / "out.json"
    out = run_pytest(tmp_path, env, "suites", "-n", "2", "--backend", "acme", "--backend", "reference",
                     "--conformance-json", str(report))
    assert out.returncode == 0, out.stdout + out.stderr
    where = {r["backend"]: r["where"] for r in json.loads(report.read_text())["results"]}
    assert where == {"acme": {"machine": "acme lab", "silicon": "A0"}, "reference": {}}


def test_import_error_in_a_vendor_plugin_is_reported(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    (tmp_path / "site" / "acme_backend.py").write_text("raise ImportError('no acme driver')\n")
    out = run_pytest(tmp_path, env, "suites")
    assert out.returncode == 1, out.stdout  # fail closed (tests/test_faults.py has the rest)
    assert "entry point acme = acme_backend: ImportError: no acme driver" in out.stdout


def test_unknown_backend_is_a_usage_error(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    out = run_pytest(tmp_path, env, "suites", "--backend", "nope")
    assert out.returncode == 4
    assert "unknown backend(s) nope; registered: acme, kernel, mutants, reference" in out.stderr


def test_cli_lists_backends(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "no-tdp")
    out = subprocess.run([sys.executable, "-m", "conformance", "backends"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert "acme 9.9: available" in out.stdout
    assert "missing mmu:tdp: acme silicon has no TDP" in out.stdout
    assert "reference 0.1.0: available" in out.stdout
    assert "profiles:    mainline, tdx-v10" in out.stdout


@pytest.mark.parametrize("good", [True, False])
def test_cli_validate(tmp_path: Path, good: bool) -> None:
    env = scratch_project(tmp_path, "ok")
    if not good:
        (tmp_path / "suites" / "scratch.toml").write_text(VECTOR.replace("npages = 0x400", "npages = 0"))
    out = subprocess.run([sys.executable, "-m", "conformance", "validate", "suites"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == (0 if good else 1)
    assert ("1 vectors loaded from 1 file(s), 0 error(s)" if good else "suites/scratch.toml:18: vector[0].slot[0].npages: 0 is below the minimum 1") in out.stdout


def test_vector_cache_sees_an_edited_file(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    cached = ["suites", "--backend", "reference", "-p", "cacheprovider"]
    assert run_pytest(tmp_path, env, *cached).returncode == 0
    assert any((tmp_path / ".pytest_cache" / "d" / "conformance-vectors").iterdir())
    vector = tmp_path / "suites" / "scratch.toml"
    vector.write_text(VECTOR.replace('decision = "shared"', 'decision = "both"'))
    out = run_pytest(tmp_path, env, *cached)
    assert out.returncode == 1
    assert "decision: expected both, observed shared" in out.stdout


def test_a_declared_failure_is_expected_and_held_to_it(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "known-fail")
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme")
    assert out.returncode == 0, out.stdout
    assert "1 xfailed" in out.stdout
    assert re.search(r"^acme +mainline +0 +0 +0 +0 +0 +0 +1 +0$", out.stdout, re.M), out.stdout


def test_a_declared_failure_that_passes_fails_the_run(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "known-pass")
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme")
    assert out.returncode == 1, out.stdout
    assert "passed an item it declares to fail: acme drops flushes" in out.stdout
