"""The released package: one pip command installs the framework with a
plugin, and the suite shipped inside it runs without a checkout."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import conformance
from conformance.load import load_all

ROOT = Path(__file__).resolve().parent.parent


def test_the_version_has_one_source() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'attr = "conformance.__version__"' in pyproject
    assert re.fullmatch(r"\d+\.\d+\.\d+", conformance.__version__)
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {conformance.__version__} " in changelog, "every release has its CHANGELOG entry"


def test_the_major_version_is_the_vector_format() -> None:
    from conformance.schema import FORMAT

    assert int(conformance.__version__.split(".")[0]) == FORMAT


@pytest.mark.slow
def test_installed_package_runs_its_suite_without_a_checkout(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    # framework and a plugin in one command (the plugin depends on the framework)
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", str(ROOT),
                              str(ROOT / "plugins" / "tdx_v10_posted")], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout + install.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()
    backends = subprocess.run([str(python), "-m", "conformance", "backends"], cwd=work, capture_output=True,
                              text=True, timeout=120)
    assert "tdx-v10-posted" in backends.stdout and "reference" in backends.stdout, backends.stdout
    out = subprocess.run([str(python), "-m", "conformance", "run", "--backend", "reference", "-q", "-p", "no:xdist",
                          "--conformance-json", "results.json"], cwd=work, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    vectors = load_all([ROOT / "suites"]).vectors
    mainline = sum(1 for v in vectors if any(p.value == "mainline" for p in v.profiles))
    v10 = sum(1 for v in vectors if any(p.value == "tdx-v10" for p in v.profiles))
    assert re.search(rf"^reference +mainline +{mainline} +0 +0 ", out.stdout, re.M), out.stdout[-2000:]
    assert re.search(rf"^reference +tdx-v10 +{v10} +0 +0 ", out.stdout, re.M), out.stdout[-2000:]
    assert not (work / ".pytest_cache").exists()  # nothing written where it was run from
    # the report's page assets and the results schema ship too
    report = subprocess.run([str(python), "-m", "conformance", "report", "results.json", "--html", "page.html"],
                            cwd=work, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stdout + report.stderr
    page = (work / "page.html").read_text()
    assert 'id="report-data"' in page and "/*SCRIPT*/" not in page and "function paged(" in page
    schema = subprocess.run([str(python), "-c", "from importlib import resources; print((resources.files('conformance')"
                             " / 'schemas' / 'results.schema.json').is_file())"], capture_output=True, text=True)
    assert schema.stdout.strip() == "True", schema.stderr
    # the templates of new-backend ship too
    new = subprocess.run([str(python), "-m", "conformance", "new-backend", "acme", "acme-dist"], cwd=work,
                         capture_output=True, text=True, timeout=120)
    assert new.returncode == 0 and (work / "acme-dist" / "conformance_acme" / "plugin.py").is_file(), new.stderr
