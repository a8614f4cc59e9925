"""`python -m conformance new-backend` end to end, as a vendor uses it: write
the distribution, `pip install -e` it into a fresh venv, run the suite (red,
not broken), write its expectations from the results, run again (green, the
failures expected). About a minute; `-m "not slow"` leaves it out."""
from __future__ import annotations

import re
import site
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conformance.results import load_results

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def fresh_venv(path: Path) -> Path:
    """A venv that sees this interpreter's packages, as --system-site-packages
    sees the system's: the framework, pytest and pip come from here, and only
    what is installed into the venv is new."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=60)
    python = path / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages())
    (Path(purelib) / "_outer_environment.pth").write_text(lines)
    return python


def run(*args: object, cwd: Path = REPO, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def outcomes(path: Path) -> Counter[str]:
    return Counter(r.outcome for r in load_results(path).results)


def test_a_new_backend_installs_runs_and_takes_its_expectations(tmp_path: Path) -> None:
    dist = tmp_path / "acme-dist"
    out = run(sys.executable, "-m", "conformance", "new-backend", "acme-fw", dist, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"pip install -e {dist}" in out.stdout

    python = fresh_venv(tmp_path / "venv")
    out = run(python, "-m", "pip", "install", "-q", "-e", dist, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    listed = run(python, "-m", "conformance", "backends", "--skip-backend", "kernel")
    assert "acme-fw 0.1.0: available" in listed.stdout and "runs: in a child process" in listed.stdout, listed.stdout
    own_tests = run(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=dist)
    assert own_tests.returncode == 0 and "4 passed" in own_tests.stdout, own_tests.stdout

    # The stub observes nothing real: every item runs and many fail, none errs.
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    suite = (python, "-m", "pytest", "-q", "-o", f"cache_dir={tmp_path / 'cache'}", "suites", "--backend", "acme-fw")
    out = run(*suite, "--conformance-json", first)
    assert out.returncode == 1, out.stdout[-3000:]
    red = outcomes(first)
    assert set(red) == {"passed", "failed"} and red["failed"] > 100, red
    assert re.search(rf"^acme-fw +mainline +{red['passed']} +{red['failed']} +0 +0 +0 +0 +0 ", out.stdout, re.M)

    expectations = dist / "conformance_acme_fw" / "expectations.toml"
    out = run(python, "-m", "conformance", "expectations", "--from", first, "--backend", "acme-fw", "-o", expectations)
    assert out.returncode == 0, out.stderr
    assert f"{red['failed']} entries for backend acme-fw" in out.stderr

    out = run(*suite, "--conformance-json", second)
    assert out.returncode == 0, out.stdout[-3000:]
    assert outcomes(second) == Counter(passed=red["passed"], xfailed=red["failed"])
    assert "expectations error" not in out.stdout  # a whole run: every entry matched an item
