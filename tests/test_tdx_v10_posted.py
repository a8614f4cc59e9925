"""The v10 047 patch as posted (plugins/tdx_v10_posted) fails exactly the
vectors its expectations file lists, covering all three review findings."""
from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from conformance.errors import LoadError
from conformance.expectations import load

posted = pytest.importorskip("conformance_tdx_v10_posted.plugin", reason="plugins/tdx_v10_posted is not installed")

ROOT = Path(__file__).resolve().parent.parent


def test_suite_fails_exactly_the_listed_vectors(tmp_path):
    report = tmp_path / "posted.json"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "suites",
                          "--backend", "tdx-v10-posted", "--conformance-json", str(report)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    # an unlisted failure, a listed pass or a stale entry (one matching no item) fails the run
    assert out.returncode == 0, out.stdout[-4000:]
    assert "expectations error" not in out.stdout
    results = json.loads(report.read_text())["results"]
    outcomes = Counter(r["outcome"] for r in results)
    assert set(outcomes) == {"passed", "xfailed"} and outcomes["xfailed"] >= 100
    assert {r["profile"] for r in results} == {"tdx-v10"}
    xfailed = [r for r in results if r["outcome"] == "xfailed"]
    by_bug = Counter(r["known_failure"].split(" ", 2)[1] for r in xfailed)  # the declared reason, apart from the diff
    assert set(by_bug) == {"a", "b", "c"}, by_bug
    reviews = {"Ackerley Tng", "Kai Huang", "Chao Gao"}
    assert all(any(name in r["known_failure"] for name in reviews) for r in xfailed)
    assert all(r["detail"].startswith("step ") for r in xfailed)  # the diff alone
    for entry in load(posted.EXPECTATIONS, owner="tdx-v10-posted"):  # each pattern catches something
        assert any(fnmatch.fnmatchcase(r["vector"], entry.failure.pattern) for r in xfailed), entry.failure.pattern


def test_expectations_cite_a_bug_with_its_review_and_flag():
    entries = load(posted.EXPECTATIONS, owner="tdx-v10-posted")
    assert len(entries) == 14 and all(e.backend == "tdx-v10-posted" for e in entries)
    bugs = {e.failure.bug.id: e.failure.bug for e in entries}
    assert sorted(bugs) == ["a", "b", "c"]
    assert {b.flag for b in bugs.values()} == {"v10-bug-a-uninit-zap-private", "v10-bug-b-memtype-zaps-private",
                                                "v10-bug-c-lost-flush"}
    assert bugs["c"].review == "Chao Gao, review of TDX v19, 2024-04-17"
    assert posted.PostedBackend().info.expectations == posted.EXPECTATIONS


def test_expectations_need_a_known_bug_and_a_reason(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text('[bug.a]\ntitle = "t"\n\n[[expected_failure]]\npattern = "p"\nbug = "z"\nreason = "w"\n')
    with pytest.raises(LoadError, match=r"x.toml:6: expected_failure\[0\]\.bug: unknown bug 'z'.*defined: a"):
        load(bad, owner="tdx-v10-posted")
    bad.write_text('[[expected_failure]]\npattern = "p"\nwhy = "w"\n')
    with pytest.raises(LoadError, match=r"x.toml:3: expected_failure\[0\]\.why: unknown key 'why'"):
        load(bad, owner="tdx-v10-posted")


def test_the_indeterminate_decision_is_reported_not_guessed():
    from conformance.load import load_file
    from conformance.model import Decision, Profile

    vector = next(v for v in load_file(ROOT / "suites" / "call" / "unmap-gfn-range-v10.toml").vectors
                  if v.id.endswith("tdx-non-private-slot-zaps-both"))
    seen = posted.PostedBackend().run(vector, Profile.TDX_V10)
    step = seen.steps[0]
    assert step.decision is Decision.INDETERMINATE
    assert step.mappings is None and step.flush is None
    assert dict(step.withheld) == {"mappings": "zap_private was read uninitialised: indeterminate",
                                   "flush": "zap_private was read uninitialised: indeterminate"}
