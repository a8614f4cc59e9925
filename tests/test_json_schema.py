"""The published JSON Schema: current, valid, and in agreement with the loader's own schema checks."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conformance import json_schema, schema
from conformance.errors import RuleViolation
from conformance.reading import read_document

ROOT = Path(__file__).resolve().parent.parent
MALFORMED = Path(__file__).resolve().parent / "malformed"


def _validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads((json_schema.SCHEMA_DIR / name).read_text()))


FILE = _validator("vector-file.schema.json")
REGISTRY = _validator("flag-registry.schema.json")


def _loader_accepts(data: dict[str, Any]) -> bool:
    """schema.py's structural checks alone (no rule relating values), over the whole file."""
    try:
        schema.check(data, schema.SUITE_FILE, ())
        for i, vector in enumerate(data.get("vector", [])):
            schema.check(vector, schema.VECTOR, ("vector", i))
        for i, table in enumerate(data.get("table", [])):
            schema.check(table, schema.DECISION_TABLE, ("table", i))
    except RuleViolation:
        return False
    return True


def test_shipped_schemas_are_current() -> None:
    assert json_schema.stale() == [], "regenerate with: python -m conformance schema --write"


def test_shipped_schemas_are_valid_draft7() -> None:
    for name in json_schema.PUBLISHED:
        jsonschema.Draft7Validator.check_schema(json.loads((json_schema.SCHEMA_DIR / name).read_text()))


def test_the_schema_is_versioned_by_format() -> None:
    document = json.loads((json_schema.SCHEMA_DIR / "vector-file.schema.json").read_text())
    assert document["$id"].endswith(f":format-{schema.FORMAT}")
    assert document["definitions"]["suite"]["properties"]["format"]["enum"] == [schema.FORMAT]


@pytest.mark.parametrize("path", sorted((ROOT / "suites").rglob("*.toml")), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_suite_file_validates(path: Path) -> None:
    data = read_document(path).data
    validator = REGISTRY if path.name == "flags.toml" else FILE
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]
    assert errors == []


def _corpus() -> list[Path]:
    return sorted(p for p in MALFORMED.rglob("*.toml") if p.name != "flags.toml")


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: p.relative_to(MALFORMED).as_posix())
def test_json_schema_and_loader_schema_agree_on_the_malformed_corpus(path: Path) -> None:
    """Every structural case (a key, a type, a bound) fails both; every other case passes both,
    so an editor flags exactly what the schema can say and the loader says the rest."""
    try:
        data = read_document(path).data
    except Exception:
        pytest.skip("not TOML: no schema applies")
    assert FILE.is_valid(data) == _loader_accepts(data)


def test_the_corpus_has_structural_cases_the_json_schema_rejects() -> None:
    rejected = []
    for path in _corpus():
        try:
            data = read_document(path).data
        except Exception:
            continue
        if not FILE.is_valid(data):
            rejected.append(path.name)
    assert len(rejected) >= 20, rejected


def test_cli_prints_and_checks_the_schema() -> None:
    out = subprocess.run([sys.executable, "-m", "conformance", "schema"], capture_output=True, text=True, timeout=60,
                         cwd=ROOT)
    assert out.returncode == 0 and json.loads(out.stdout)["title"].startswith("kvm-mmu-conformance vector file")
    check = subprocess.run([sys.executable, "-m", "conformance", "schema", "--check"], capture_output=True, text=True,
                           timeout=60, cwd=ROOT)
    assert check.returncode == 0, check.stdout


def test_expectations_files_validate_and_their_schema_refuses_a_bad_entry() -> None:
    document = json.loads((json_schema.SCHEMA_DIR / "expectations.schema.json").read_text())
    validator = jsonschema.Draft7Validator(document)
    shipped = ROOT / "plugins" / "tdx_v10_posted" / "conformance_tdx_v10_posted" / "expected-failures.toml"
    data = read_document(shipped).data
    assert list(validator.iter_errors(data)) == []
    entry = dict(data["expected_failure"][0])
    del entry["reason"]
    assert [e.validator for e in validator.iter_errors({"expected_failure": [entry]})] == ["required"]
    assert document["$id"] == "urn:kvm-mmu-conformance:expectations-file:format-1"
