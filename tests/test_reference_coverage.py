"""CI gate: the suite alone drives every branch of the reference backend's
rule code (backends/reference). A branch no vector reaches is either a rule
the suite does not pin down or dead code; both fail here."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _coverage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coverage", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_suite_alone_gives_the_reference_full_branch_coverage(tmp_path):
    env = {**os.environ, "COVERAGE_FILE": str(tmp_path / ".coverage")}
    run = _coverage("run", "--branch", "--source=conformance_reference", "-m", "pytest", "-p", "no:xdist",
                    "-p", "no:cacheprovider", "-q", "suites", "--backend", "reference", env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    _coverage("combine", env=env)
    report = _coverage("report", "--fail-under=100", "--show-missing", env=env)
    assert report.returncode == 0, report.stdout
    total = next(line for line in report.stdout.splitlines() if line.startswith("TOTAL"))
    assert total.split()[-1] == "100%", report.stdout
