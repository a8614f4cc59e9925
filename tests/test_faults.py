"""A run never loses a result: faulty out-of-tree backends (isolated in
child processes by default) fail their own items with the right outcome and
reason, serially and under xdist; broken plugins fail the run (fail closed);
every collected item is counted once in the matrix and the JSON."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from test_plugin import REPO, VECTOR, run_pytest, scratch_project

# Several vectors, so that one faulty item must not take its neighbours.
BODY = VECTOR.split("[[vector]]", 1)[1]
MORE = "".join("[[vector]]" + BODY.replace('"tdx-notifier"', f'"tdx-notifier-{i}"') for i in range(2, 5))
FAULTS = {  # mode -> (outcome, what the reason says)
    "abort": ("crashed", "crashed: SIGABRT"),
    "segv": ("crashed", "crashed: SIGSEGV"),
    "exit": ("crashed", "crashed: exited with status 3"),
    "spin": ("timeout", "killed after 2 s"),
    "hang": ("timeout", "killed after 2 s"),
    "memory": ("crashed", "exceeded 512 MiB"),
    "sysexit": ("error", "raised SystemExit: 2"),
    "none": ("error", "backend acme returned None (NoneType), expected an Observation"),
    "bad-flush": ("error", "backend acme returned field `flush` of step 1 is 'yes', expected bool"),
}


def project(tmp_path: Path, mode: str) -> dict[str, str]:
    env = scratch_project(tmp_path, mode)
    scratch = tmp_path / "suites" / "scratch.toml"
    scratch.write_text(scratch.read_text() + "\n" + MORE)
    return env


def results(path: Path) -> list[dict]:
    return json.loads(path.read_text())["results"]


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
@pytest.mark.parametrize("mode", sorted(FAULTS))
def test_a_fault_fails_only_its_items_with_its_reason(tmp_path: Path, mode: str, xdist: bool) -> None:
    env = project(tmp_path, mode)
    report = tmp_path / "out.json"
    started = time.monotonic()
    # the memory hog gets time enough to reach the limit even on a loaded machine: only the limit may stop it
    limit = "30" if mode == "memory" else "2"
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme", "--backend", "reference",
                     "--conformance-timeout", limit, "--conformance-memory-limit", "0.5",
                     "--conformance-json", str(report), *(["-n", "2"] if xdist else ["-p", "no:xdist"]))
    elapsed = time.monotonic() - started
    outcome, reason = FAULTS[mode]
    assert out.returncode == 1, out.stdout + out.stderr
    got = results(report)
    assert len(got) == 8  # 4 vectors x 2 backends, each exactly once
    acme = [r for r in got if r["backend"] == "acme"]
    assert {r["outcome"] for r in acme} == {outcome}, acme
    assert all(reason in r["detail"] for r in acme), acme
    assert {r["outcome"] for r in got if r["backend"] == "reference"} == {"passed"}
    row = {"crashed": 3, "timeout": 4, "error": 2}[outcome]  # matrix columns: passed failed error crashed timeout
    cells = ["0"] * 5
    cells[row] = "4"
    assert re.search(rf"^acme +mainline +{' +'.join(cells)} +0 +0", out.stdout, re.M), out.stdout
    assert elapsed < (60 if xdist else 45)  # each timed-out item costs its 2 s limit, not more


def test_the_faulty_items_are_counted_in_the_matrix_json_and_junit(tmp_path: Path) -> None:
    env = project(tmp_path, "segv")
    report, junit = tmp_path / "out.json", tmp_path / "junit.xml"
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme", "--backend", "reference", "-n", "2",
                     "--conformance-json", str(report), f"--junitxml={junit}")
    collected = int(re.search(r"(\d+) items", out.stdout).group(1)) if "items" in out.stdout else 8
    assert len(results(report)) == collected == 8
    xml = junit.read_text()
    assert xml.count("<testcase ") == 8
    props = re.findall(r'<property name="conformance" value="([^"]*)"', xml)
    assert len(props) == 8 and all(json.loads(p.replace("&quot;", '"').replace("&amp;", "&")) for p in props)


def test_a_broken_installed_backend_fails_the_run_with_its_error(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    (tmp_path / "site" / "acme_backend.py").write_text("raise ImportError('no acme driver')\n")
    out = run_pytest(tmp_path, env, "suites", "--backend", "reference")
    assert out.returncode == 0, out.stdout  # not selected: never imported
    out = run_pytest(tmp_path, env, "suites")
    assert out.returncode == 1, out.stdout
    head = out.stdout.split("collected", 1)[0]
    assert "conformance plugin error: entry point acme = acme_backend (distribution acme-mmu) (isolated)" in head
    assert "ImportError: no acme driver" in head
    assert "the run fails: a backend could not be loaded" in out.stdout
    out = run_pytest(tmp_path, env, "suites", "--skip-backend", "acme")
    assert out.returncode == 0 and "skipped by request: acme" in out.stdout
    cli = subprocess.run([sys.executable, "-m", "conformance", "backends"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1 and cli.stdout.startswith("plugin error: entry point acme")


@pytest.mark.parametrize("module", [
    "import sys\nsys.exit(3)\n",
    "from conformance.hookspecs import hookimpl\n@hookimpl\ndef conformance_backend():\n    raise RuntimeError('probe died')\n",
    "from conformance.hookspecs import hookimpl\n@hookimpl\ndef conformance_backend():\n    return 42\n",
], ids=["sysexit-at-import", "hook-raises", "hook-returns-int"])
@pytest.mark.parametrize("where", ["isolated", "in-process", "isolated-xdist"])
def test_every_kind_of_broken_plugin_fails_closed(tmp_path: Path, module: str, where: str) -> None:
    env = scratch_project(tmp_path, "ok")
    (tmp_path / "site" / "acme_backend.py").write_text(module)
    flag = ["--in-process", "acme"] if where == "in-process" else ["-n", "2"] if where.endswith("xdist") else []
    out = run_pytest(tmp_path, env, "suites", "--backend", "reference", "--backend", "acme", *flag)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "INTERNALERROR" not in out.stdout + out.stderr
    assert "plugin error: entry point acme" in out.stdout
    assert "PASSED suites/scratch.toml::tdx-notifier[reference:mainline]" in out.stdout


def test_two_distributions_claiming_one_name_are_an_error_naming_both(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    dist = tmp_path / "site" / "other_mmu-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: other-mmu\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[kvm_mmu_conformance.backends]\nacme = acme_backend\n"
                                           "reference = acme_backend\n")
    out = run_pytest(tmp_path, env, "suites", "--backend", "kernel")
    assert out.returncode == 1
    for name in ("acme", "reference"):
        assert f"backend name '{name}': registered by more than one distribution" in out.stdout
    assert "distribution other-mmu" in out.stdout and "distribution kvm-mmu-conformance" in out.stdout


def test_selection_comes_before_construction(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    (tmp_path / "site" / "acme_backend.py").write_text(
        "import pathlib\npathlib.Path('acme-imported').write_text('yes')\n")
    out = run_pytest(tmp_path, env, "suites", "--backend", "reference")
    assert out.returncode == 0
    assert not (tmp_path / "acme-imported").exists()
    assert "conformance backends: reference" in out.stdout


def test_the_rerun_command_works_from_anywhere(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "drops-flush")
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme")
    command = re.search(r"^re-run: (.*)$", out.stdout, re.M).group(1)
    assert command.startswith(sys.executable) and str(tmp_path / "suites" / "scratch.toml") in command
    again = subprocess.run(command + " -p no:cacheprovider", shell=True, cwd="/", env=env, capture_output=True,
                           text=True, timeout=120)
    assert "1 failed" in again.stdout and "flush: expected true, observed false" in again.stdout


def test_ctrl_c_ends_the_run_and_leaves_no_child(tmp_path: Path) -> None:
    env = project(tmp_path, "hang")
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "suites",
                            "--backend", "acme", "--conformance-timeout", "60"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    children: list[int] = []
    deadline = time.monotonic() + 30
    while not children and time.monotonic() < deadline:
        time.sleep(0.2)
        children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == run.pid]
    assert children, "the isolated backend's child never started"
    run.send_signal(signal.SIGINT)
    run.communicate(timeout=20)
    time.sleep(0.5)
    assert not [p for p in children if Path(f"/proc/{p}").exists() and _state(p) != "Z"]


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def test_an_error_in_the_verdict_is_the_frameworks_not_the_backends(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok", {"conftest.py": (
        "import conformance.pytest_plugin as plugin\n"
        "def broken(*args, **kwargs):\n    raise ZeroDivisionError('verdict bug')\n"
        "plugin.judge = broken\n")})
    report = tmp_path / "out.json"
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme", "--conformance-json", str(report))
    assert out.returncode == 1
    [result] = results(report)
    assert result["outcome"] == "error"
    assert result["detail"] == "framework error: the verdict raised ZeroDivisionError: verdict bug"
    assert "backend acme raised" not in out.stdout
