"""Expectation files: the format, its errors (file, line, key), writing one
from a results file, and the lookups and stale check the runner makes."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conformance.contract import BackendInfo, KnownFailure
from conformance.errors import LoadError
from conformance.expectations import escape, failures, load, render
from conformance.known import KnownFailures
from conformance.model import Layer, Observable, Profile, VmType
from conformance.results import Result, Results, Run

GOOD = textwrap.dedent('''\
    format = 1
    backend = "acme"
    description = "acme firmware 2.1"

    [bug.ACME-17]
    title = "the flush after a private zap is dropped"
    review = "found by the suite, 2026-11-30"
    flag = "lost-flush"
    links = ["https://bugs.example/ACME-17"]

    [[expected_failure]]
    pattern = "call/zap-all::*"
    reason = "fast zap is not implemented"
    profile = "mainline"

    [[expected_failure]]
    pattern = "event/memslot::delete"
    reason = "the flush is dropped"
    bug = "ACME-17"
    links = ["https://lore.example/1"]
    ''')


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "acme.toml"
    path.write_text(text)
    return path


def test_a_good_file(tmp_path):
    path = write(tmp_path, GOOD)
    first, second = load(path)
    assert first.backend == second.backend == "acme"
    assert first.failure == KnownFailure("call/zap-all::*", "fast zap is not implemented", "mainline",
                                         origin=f"{path}:11")
    assert second.failure.bug.title == "the flush after a private zap is dropped"
    assert second.failure.bug.links == ("https://bugs.example/ACME-17",)
    assert second.failure.links == ("https://lore.example/1",)
    assert second.failure.message == "bug ACME-17 (found by the suite, 2026-11-30): the flush is dropped"
    assert load(path, owner="acme") == (first, second)


@pytest.mark.parametrize(("text", "owner", "error"), [
    ('[[expected_failure]]\npattern = "p"\n', "acme", ":1: expected_failure[0].reason: missing required key"),
    ('[[expected_failure]]\npattern = "p"\nreason = ""\n', "acme",
     ":3: expected_failure[0].reason: must be a non-empty single line"),
    ('[[expected_failure]]\npattern = "p"\nreason = "r"\nprofile = "main"\n', "acme",
     ":4: expected_failure[0].profile: unknown Profile 'main'; allowed: tdx-v10, mainline"),
    ('[[expected_failure]]\npattern = "p"\nreason = "r"\nbug = "x"\n', "acme",
     ":4: expected_failure[0].bug: unknown bug 'x': define it as [bug.x]; defined: none"),
    ('[[expected_failure]]\npattern = "p"\nreason = "r"\n', None,
     ':1: expected_failure[0]: names no backend: a file given with --expectations needs backend = "NAME"'),
    ('backend = "other"\n[[expected_failure]]\npattern = "p"\nreason = "r"\n', "acme",
     ":1: backend: names backend 'other', but this is the expectations file of backend 'acme'"),
    ('[[expected_failure]]\npattern = "p"\nreason = "r"\nbackend = "other"\n', "acme",
     ":4: expected_failure[0].backend: names backend 'other', but this is the expectations file of backend"),
    ('format = 2\n', "acme", ":1: format: must be 1, got 2"),
    ('[bug.a]\nreview = "r"\n', "acme", ":1: bug.a.title: missing required key"),
    ('[[expected_failure]]\npattern = "p"\nreason = "r"\nwhy = "w"\n', "acme",
     ":4: expected_failure[0].why: unknown key 'why'; allowed keys: pattern, reason, profile, backend, bug, links"),
    ('[[expected_failure]\n', "acme", ":1: <toml>:"),
])
def test_errors_name_file_line_and_key(tmp_path, text, owner, error):
    path = write(tmp_path, text)
    with pytest.raises(LoadError) as info:
        load(path, owner=owner)
    assert str(info.value).startswith(f"{path}{error}"), str(info.value)


def result(vector, outcome, profile="mainline", backend="acme", detail="step 1: flush: expected true, observed false",
           known_failure=""):
    return Result(f"suites/x.toml::{vector}[{backend}:{profile}]", vector, backend, profile, outcome, detail,
                  known_failure=known_failure)


RESULTS = [
    result("call/zap-all::fast", "failed"),
    result("call/zap-all::fast", "failed", "tdx-v10"),  # fails in every profile it ran in: no profile
    result("call/zap-all::slow", "failed"),
    result("call/zap-all::slow", "passed", "tdx-v10"),  # fails in one: that profile
    result("call/odd::a[1]*", "xfailed", detail="step 1: ...", known_failure="bug a (review): known"),  # escaped
    result("call/odd::b", "failed", detail="declared to fail (r) but passed", known_failure="r"),  # it passes
    result("call/odd::b2", "failed", detail="declared to fail (r) but passed"),  # the same in a legacy list
    result("call/odd::c", "error", detail="backend acme raised RuntimeError"),  # not a wrong observation
    result("call/odd::d", "failed", backend="other"),
]


def test_failures_from_results():
    assert failures(RESULTS, "acme") == [
        ("call/odd::a[1]*", None, "bug a (review): known"),
        ("call/zap-all::fast", None, "step 1: flush: expected true, observed false"),
        ("call/zap-all::slow", "mainline", "step 1: flush: expected true, observed false"),
    ]


def test_a_written_file_loads_and_matches_exactly_its_items(tmp_path):
    path = write(tmp_path, render("acme", failures(RESULTS, "acme"), "results.json"))
    entries = load(path, owner="acme")
    assert [e.failure.pattern for e in entries] == ["call/odd::a[[]1][*]", "call/zap-all::fast", "call/zap-all::slow"]
    assert entries[0].failure.matches("call/odd::a[1]*", "mainline")
    assert not entries[0].failure.matches("call/odd::a1", "mainline")
    assert load(path) == entries  # it names its backend: usable with --expectations as well
    assert escape("x::y") == "x::y"


def test_an_odd_reason_is_written_as_valid_toml(tmp_path):
    detail = 'quote " backslash \\ tab \t del \x7f'
    path = write(tmp_path, render("acme", failures([result("v::x", "failed", detail=detail)], "acme"), "r"))
    assert load(path)[0].failure.reason == detail


def run_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance", "expectations", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("shape", ["list", "object"])
def test_cli_accepts_both_results_shapes(tmp_path, shape):
    items = [r.as_dict() for r in RESULTS]
    document = Results((Run(),), RESULTS).as_dict() if shape == "object" else items
    (tmp_path / "r.json").write_text(json.dumps(document))
    out = run_cli(tmp_path, "--from", "r.json", "--backend", "acme", "-o", "acme.toml")
    assert out.returncode == 0, out.stderr
    assert "3 entries for backend acme from 8 results (1 error, 5 failed, 1 passed, 1 xfailed); 1 errors" in out.stderr
    assert [e.failure.pattern for e in load(tmp_path / "acme.toml", owner="acme")][1:] == [
        "call/zap-all::fast", "call/zap-all::slow"]
    printed = run_cli(tmp_path, "--from", "r.json", "--backend", "acme")
    assert printed.stdout == (tmp_path / "acme.toml").read_text()


def test_cli_refuses_what_it_cannot_use(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps([r.as_dict() for r in RESULTS]))
    out = run_cli(tmp_path, "--from", "r.json", "--backend", "nope")
    assert out.returncode == 2 and "no results of backend nope in r.json; backends there: acme, other" in out.stderr
    (tmp_path / "r.json").write_text(json.dumps({"items": []}))
    out = run_cli(tmp_path, "--from", "r.json", "--backend", "acme")
    assert out.returncode == 2 and "expectations: r.json: results format None" in out.stderr, out.stderr
    (tmp_path / "r.json").write_text(json.dumps([{"vector": "v"}]))
    out = run_cli(tmp_path, "--from", "r.json", "--backend", "acme")
    assert out.returncode == 2 and "an item lacks or mangles 'nodeid'" in out.stderr, out.stderr


INFO = dict(name="acme", version="1", profiles=frozenset(Profile), layers=frozenset(Layer),
            vm_types=frozenset(VmType), observables=frozenset(Observable))


def test_lookups_give_the_first_entry_in_order(tmp_path):
    own = write(tmp_path, 'backend = "acme"\n[[expected_failure]]\npattern = "call/*"\nreason = "own file"\n')
    (tmp_path / "given").mkdir()
    given = load(write(tmp_path / "given", '[[expected_failure]]\nbackend = "acme"\npattern = "call/a::x"\n'
                       'reason = "given"\n[[expected_failure]]\nbackend = "zeta"\npattern = "*"\nreason = "z"\n'))
    info = BackendInfo(**INFO, expectations=own, known_failures=(KnownFailure("call/a::x", "coded", "tdx-v10"),))
    known = KnownFailures.gather(info, given)
    assert [k.reason for k in known.entries] == ["given", "own file", "coded"]  # the other backend's left out
    assert known.find("call/a::x", "mainline").reason == "given"
    assert known.find("call/b::y", "mainline").reason == "own file"
    assert known.find("event/a::x", "mainline") is None
    assert known.entries[2].origin == "backend acme: BackendInfo.known_failures[0]"


def test_stale_entries_are_those_matching_no_item():
    known = KnownFailures("acme", (
        KnownFailure("call/a::x", "exact", origin="f:1"),
        KnownFailure("call/*", "wild", origin="f:2"),
        KnownFailure("call/a::x", "other profile", "tdx-v10", origin="f:3"),
        KnownFailure("event/*", "nothing", origin="f:4"),
    ))
    assert known.stale([("mainline", "call/a::x")]) == [
        "f:3: pattern 'call/a::x' matches no collected item of backend acme in profile tdx-v10 "
        "(a stale entry: remove or fix it)",
        "f:4: pattern 'event/*' matches no collected item of backend acme (a stale entry: remove or fix it)",
    ]
