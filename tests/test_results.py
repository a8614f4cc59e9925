"""The results file: versioned, valid against its shipped JSON Schema, with
the run's metadata and every item (load and collection errors included),
the same under xdist; JUnit XML carries each item as JSON; the reader takes
the legacy bare list; `report` merges files without counting a run twice."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest

import conformance
from conformance import merge
from conformance.results import FORMAT, SCHEMA_ID, Results, ResultsError, from_json, load_results

from test_plugin import REPO, VECTOR, run_pytest, scratch_project

SCHEMA = json.loads((REPO / "conformance" / "schemas" / "results.schema.json").read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
BROKEN_VECTOR = VECTOR.replace('type = "TDX"', 'type = "TDZ"')  # one error item, "loader"
UNREADABLE = VECTOR.replace("[suite]", "[suite", 1)  # the whole file: a collection error


def valid(document: dict) -> dict:
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(document)]
    assert errors == [], errors[:5]
    return document


def run(tmp_path: Path, *extra: str) -> tuple[dict, Path]:
    """acme declares the scratch vector a known failure (xfailed), the reference passes it."""
    env = scratch_project(tmp_path, "known-fail", {"suites/broken.toml": BROKEN_VECTOR,
                                                   "suites/unreadable.toml": UNREADABLE})
    report, junit = tmp_path / "out.json", tmp_path / "junit.xml"
    out = run_pytest(tmp_path, env, "suites", "--backend", "acme", "--backend", "reference",
                     "--conformance-json", str(report), f"--junitxml={junit}", *extra)
    assert out.returncode == 1, out.stdout + out.stderr  # the load and collection errors fail the run
    return valid(json.loads(report.read_text())), junit


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_a_run_writes_a_valid_versioned_document(tmp_path: Path, xdist: bool) -> None:
    document, junit = run(tmp_path, *(["-n", "2"] if xdist else ["-p", "no:xdist"]))
    assert document["$schema"] == SCHEMA_ID == SCHEMA["$id"] and document["format"] == FORMAT == 1
    [meta] = document["runs"]
    assert meta["framework"] == {"name": "kvm-mmu-conformance", "version": conformance.__version__}
    assert meta["suite"]["files"] == 4 and meta["suite"]["hash"].startswith("sha256:")  # flags.toml and 3 files
    assert meta["host"] == {"name": platform.node(), "kernel": platform.release()}
    assert meta["started"] <= meta["finished"] and meta["exit_status"] == 1 and not meta["legacy"]
    assert meta["command"]["args"][-1:] == (["-n", "2"] if xdist else ["-p", "no:xdist"])[-1:]
    assert "--conformance-json" in meta["command"]["argv"] and meta["command"]["cwd"] == str(tmp_path)
    acme = next(b for b in meta["backends"] if b["name"] == "acme")
    assert acme["version"] == "9.9" and acme["where"] == {"machine": "acme lab", "silicon": "A0"}
    assert sorted(b["name"] for b in meta["backends"]) == ["acme", "reference"]

    by_key = {(r["vector"], r["backend"]): r for r in document["results"]}
    assert sorted(by_key) == [
        ("broken::tdx-notifier", "loader"),  # the bad vector: an error item
        ("scratch::tdx-notifier", "acme"),
        ("scratch::tdx-notifier", "reference"),
        ("unreadable", "loader"),  # the file that could not be read
    ]
    xfailed = by_key[("scratch::tdx-notifier", "acme")]
    assert xfailed["outcome"] == "xfailed" and xfailed["known_failure"] == "acme drops flushes"
    assert xfailed["detail"] == "step 1 (unmap_gfn_range, line 27): flush: expected true, observed false"
    assert xfailed["flags"] == [{"name": "basic", "bug_class": "basic"}]
    assert xfailed["description"] == "TDX notifier keeps the mirror" and xfailed["profile"] == "mainline"
    assert xfailed["where"] == {"machine": "acme lab", "silicon": "A0"} and xfailed["run"] == 0
    assert by_key[("scratch::tdx-notifier", "reference")]["outcome"] == "passed"
    assert "unknown VmType 'TDZ'" in by_key[("broken::tdx-notifier", "loader")]["detail"]
    assert by_key[("unreadable", "loader")]["outcome"] == "error"

    # JUnit XML: every test case carries its item once, as JSON, equal to the file's
    cases = list(ET.parse(junit).getroot().iter("testcase"))
    properties = [p for case in cases for p in case.iter("property") if p.get("name") == "conformance"]
    assert len(properties) == 3  # the collection error is no test case
    from_junit = {json.loads(p.get("value"))["nodeid"]: json.loads(p.get("value")) for p in properties}
    from_file = {r["nodeid"]: r for r in document["results"]}
    assert [from_file[nodeid] for nodeid in from_junit] == list(from_junit.values())


def test_the_suite_hash_follows_the_suite_files(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")

    def suite_hash() -> str:
        report = tmp_path / "out.json"
        out = run_pytest(tmp_path, env, "suites", "--backend", "reference", "--conformance-json", str(report))
        assert out.returncode == 0, out.stdout
        digest = json.loads(report.read_text())["runs"][0]["suite"]["hash"]
        assert f"{digest[:19]} (2 files)" in out.stdout  # the header names what the results file records
        return str(digest)

    first = suite_hash()
    assert suite_hash() == first
    flags = tmp_path / "suites" / "flags.toml"
    flags.write_text(flags.read_text().replace("plain behaviour", "plain behaviour, reworded"))
    assert suite_hash() != first  # the flag registry counts


def test_the_reader_takes_the_legacy_list_and_refuses_unknown_formats(tmp_path: Path) -> None:
    legacy = [{"nodeid": "s.toml::a[reference:mainline]", "vector": "s::a", "backend": "reference",
               "profile": "mainline", "outcome": "passed", "detail": "", "ignored": [], "where": {}}]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(legacy))
    read = load_results(path)
    assert read.legacy and read.runs[0].source == "old.json" and read.results[0].vector == "s::a"
    valid(read.as_dict())  # a legacy file converts into the current format
    with pytest.raises(ResultsError, match="results format 2; this reader knows format 1"):
        from_json({"$schema": "x", "format": 2, "runs": [], "results": []})
    with pytest.raises(ResultsError, match=r"items name run\(s\) \[1\]"):
        from_json({"format": 1, "runs": [{}], "results": [{**legacy[0], "run": 1}]})
    path.write_text("{")
    with pytest.raises(ResultsError, match="old.json"):
        load_results(path)


def test_report_merges_runs_once_and_writes_valid_json(tmp_path: Path) -> None:
    env = scratch_project(tmp_path, "ok")
    a, again, b = tmp_path / "a.json", tmp_path / "again.json", tmp_path / "b.json"
    for path, backend in ((a, "reference"), (again, "reference"), (b, "acme")):
        out = run_pytest(tmp_path, env, "suites", "--backend", backend, "--conformance-json", str(path))
        assert out.returncode == 0, out.stdout
    legacy = tmp_path / "legacy.json"
    old_keys = ("nodeid", "vector", "backend", "profile", "outcome", "detail", "ignored", "where")
    legacy.write_text(json.dumps([{k: r[k] for k in old_keys} for r in json.loads(a.read_text())["results"]]))
    merged = tmp_path / "merged.json"

    def report(*files: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "conformance", "report", *map(str, files), "--json", str(merged)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)

    out = report(a, again, b, legacy)
    assert out.returncode == 0, out.stderr
    assert f"report: {legacy}: a legacy results file" in out.stdout
    assert "4 items from 4 run(s) in 4 file(s)" in out.stdout
    document = valid(json.loads(merged.read_text()))
    assert [r["source"] for r in document["runs"]] == ["a.json", "again.json", "b.json", "legacy.json"]
    assert [(r["backend"], r["run"]) for r in document["results"]] == [
        ("reference", 0), ("reference", 1), ("acme", 2), ("reference", 3)]
    first = load_results(merged)
    out = report(merged, a, b)  # the same runs again: counted once
    assert out.returncode == 0 and "4 items from 4 run(s) in 3 file(s)" in out.stdout, out.stdout
    assert load_results(merged) == first
    lines = merge.matrix_lines(first)
    host = platform.node()
    assert any(line.startswith("acme") and line.endswith(f"{host} (machine=acme lab, silicon=A0)") for line in lines)
    # two runs of one backend on one machine keep a column each; the legacy file is a machine of its own
    assert sorted(line.split()[-1] for line in lines if line.startswith("reference")) == [
        "1]", "2]", "legacy.json"], lines
    out = report(tmp_path / "missing.json")
    assert out.returncode == 2 and "missing.json" in out.stderr


def test_merge_is_lossless_over_results() -> None:
    one = from_json({"format": 1, "runs": [{"host": {"name": "h1", "kernel": "k"}}], "results": [
        {"nodeid": "n", "vector": "v", "backend": "b", "profile": "p", "outcome": "passed"}]})
    two = from_json({"format": 1, "runs": [{"host": {"name": "h2", "kernel": "k"}}], "results": [
        {"nodeid": "n", "vector": "v", "backend": "b", "profile": "p", "outcome": "failed", "detail": "d"}]})
    merged = merge.merge([one, two, one])
    assert isinstance(merged, Results) and len(merged.runs) == 2
    assert [(r.outcome, r.run) for r in merged.results] == [("passed", 0), ("failed", 1)]
    assert [c.machine for c in merge.columns(merged)] == ["h1", "h2"]  # another host: another column
