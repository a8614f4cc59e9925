"""The real Taplo CLI against the shipped JSON Schemas and .taplo.toml (what an editor sees).

Skipped unless `taplo` is on PATH or in ~/.cargo/bin. Only Taplo's exit status and its
diagnostics (`error: ...` and `┌─ path:line:col`) are asserted: its log lines
(`found files`, `using schema`, `invalid file`) go through an unflushed writer in
taplo-cli 0.10 and can be lost when the process exits.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MALFORMED = Path(__file__).resolve().parent / "malformed"
SCHEMAS = ROOT / "conformance" / "schemas"
VECTOR_SCHEMA = SCHEMAS / "vector-file.schema.json"
SUITE_FILES = sorted((ROOT / "suites").rglob("*.toml"))


def _taplo() -> str | None:
    found = shutil.which("taplo")
    if found:
        return found
    cargo = Path.home() / ".cargo" / "bin" / "taplo"
    return str(cargo) if os.access(cargo, os.X_OK) else None


TAPLO = _taplo()
pytestmark = pytest.mark.skipif(TAPLO is None, reason="taplo not installed: cargo install taplo-cli --locked")


def _check(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert TAPLO is not None
    return subprocess.run([TAPLO, "check", "--colors", "never", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def _flagged(stderr: str) -> set[str]:
    """The files that Taplo's diagnostics point into."""
    return set(re.findall(r"┌─ (\S+\.toml):\d+:\d+", stderr))


def _line_of(path: Path, prefix: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(prefix))


def _layout(tmp_path: Path) -> Path:
    """A copy of the repository's .taplo.toml, schemas and suites/: Taplo resolves the config against its cwd."""
    shutil.copy(ROOT / ".taplo.toml", tmp_path / ".taplo.toml")
    shutil.copytree(SCHEMAS, tmp_path / "conformance" / "schemas")
    shutil.copytree(ROOT / "suites", tmp_path / "suites")
    return tmp_path


def test_every_suite_file_passes() -> None:
    out = _check("suites/**/*.toml", cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert not re.search(r"^error", out.stderr, re.MULTILINE), out.stderr


def test_taplo_toml_gives_every_suite_file_a_schema(tmp_path: Path) -> None:
    """A root key that neither schema has, added to every suite file, is flagged in every one of them:
    so each file is checked, and (as each passes unchanged) against the schema of its kind."""
    root = _layout(tmp_path)
    copies = sorted((root / "suites").rglob("*.toml"))
    assert len(copies) == len(SUITE_FILES)
    for path in copies:
        path.write_text("not_a_format_key = 1\n" + path.read_text())
    out = _check("suites/**/*.toml", cwd=root)
    assert out.returncode == 1, out.stderr
    assert _flagged(out.stderr) == {str(p) for p in copies}
    assert out.stderr.count("error: Additional properties are not allowed ('not_a_format_key' was unexpected)") \
        >= len(copies)


def test_taplo_toml_rules_reject_a_bad_vector_file_and_a_bad_registry(tmp_path: Path) -> None:
    root = _layout(tmp_path)
    bad_vector = root / "suites" / "extra" / "typo.toml"
    bad_registry = root / "suites" / "extra" / "flags.toml"
    bad_vector.parent.mkdir()
    shutil.copy(MALFORMED / "unknown_vector_key.toml", bad_vector)
    shutil.copy(MALFORMED / "badregistry" / "flags.toml", bad_registry)

    out = _check("suites/**/*.toml", cwd=root)
    assert out.returncode == 1, out.stderr
    assert _flagged(out.stderr) == {str(bad_vector), str(bad_registry)}
    assert f"┌─ {bad_vector}:{_line_of(bad_vector, 'name =')}:" in out.stderr
    assert "error: Additional properties are not allowed ('name' was unexpected)" in out.stderr
    crash = _line_of(bad_registry, 'bug_class = "crash"')
    assert f"┌─ {bad_registry}:{crash}:" in out.stderr
    assert 'error: "crash" is not one of ["basic",' in out.stderr


@pytest.mark.parametrize(("name", "key"), [
    ("unknown_vector_key.toml", "name"),  # a [[vector]] key the format does not have
    ("unknown_op_param.toml", "slot"),  # a parameter the step's op does not take (an if/then case of the schema)
])
def test_malformed_file_fails_naming_the_bad_key(name: str, key: str) -> None:
    path = MALFORMED / name
    # --no-auto-config: a file that a .taplo.toml excludes would be skipped with exit status 0
    out = _check("--no-auto-config", "--schema", VECTOR_SCHEMA.as_uri(), str(path), cwd=ROOT)
    assert out.returncode == 1, out.stderr
    assert f"error: Additional properties are not allowed ('{key}' was unexpected)" in out.stderr
    assert f"┌─ {path}:{_line_of(path, key + ' =')}:" in out.stderr


def test_schema_directive_with_a_path_relative_to_the_file(tmp_path: Path) -> None:
    """`#:schema <path>` for a file that no rule of .taplo.toml covers; the path is the file's, not the cwd's."""
    draft = tmp_path / "drafts" / "new.toml"
    draft.parent.mkdir()
    directive = f"#:schema {os.path.relpath(VECTOR_SCHEMA, draft.parent)}\n"
    draft.write_text(directive + (MALFORMED / "bad_gpaw.toml").read_text())
    out = _check("--no-auto-config", str(draft), cwd=ROOT)
    assert out.returncode == 1, out.stderr
    assert "error: 50 is not one of [48,52]" in out.stderr
    assert f"┌─ {draft}:{_line_of(draft, 'gpaw =')}:" in out.stderr

    draft.write_text(directive + (ROOT / "suites" / "call" / "zap-all.toml").read_text())
    out = _check("--no-auto-config", str(draft), cwd=ROOT)
    assert out.returncode == 0, out.stderr
