"""Differential fuzzing: the generator makes loadable vectors, reference and
Rust agree on a bounded run, and a seeded mutant is found, shrunk and written
out as a vector that the reference passes and the mutant fails."""
from __future__ import annotations

import pytest

pytest.importorskip("hypothesis", reason="hypothesis is not installed (the test extra has it)")
from hypothesis import given, settings  # noqa: E402

from conformance import fuzz  # noqa: E402
from conformance.dump import suite_toml  # noqa: E402
from conformance.load import load_file  # noqa: E402
from conformance.model import Profile  # noqa: E402
from conformance.registry import discover  # noqa: E402
from conformance.verdict import judge  # noqa: E402

FLAGS = '[flags.x]\ndescription = "x"\nbug_class = "basic"\nkernel = []\n'


@pytest.fixture(scope="module")
def registry():
    found = discover()
    found.collect_mutants()
    return found


def test_generated_cases_load_back_unchanged(tmp_path):
    seen = []

    @settings(max_examples=60, deadline=None, database=None)
    @given(fuzz.vectors())
    def case(vector):
        path = tmp_path / f"case{len(seen)}.toml"
        path.write_text(suite_toml("generated", [(vector, "case", ())], flags=(fuzz.FOUND_FLAG,)))
        (again,) = load_file(path).vectors
        assert (again.state, tuple(s.op for s in again.steps), again.requires) == \
               (vector.state, tuple(s.op for s in vector.steps), vector.requires)
        seen.append(vector.profiles)

    case()
    assert {p for ps in seen for p in ps} == set(Profile)


def test_reference_and_rust_agree_on_a_bounded_run(registry):
    names = [n for n in ("reference", "rust") if n in registry.backends]
    if len(names) < 2:
        pytest.skip("the rust backend is not installed: nothing to compare the reference with")
    backends = [registry.backends[n] for n in names]
    finding = fuzz.search(backends, list(Profile), examples=300, seed=20261125)
    assert finding is None, "\n".join(finding.differences)


def test_a_seeded_mutant_is_found_and_written_out(registry, tmp_path):
    if "mutant:huge-leaf-kept-when-partly-covered" not in registry.mutants:
        pytest.skip("plugins/mutants is not installed")
    reference, mutant = registry.backends["reference"], registry.mutants["mutant:huge-leaf-kept-when-partly-covered"]
    finding = fuzz.search([reference, mutant], list(Profile), examples=300, seed=7)
    assert finding is not None and finding.differences
    path = fuzz.write_finding(finding, tmp_path, seed=7)
    text = path.read_text()
    assert "expectations are reference's observation" in text and "(seed 7)" in text
    (vector,) = load_file(path).vectors
    profile = next(iter(vector.profiles))
    assert judge(vector, reference.run(vector, profile), reference.info.observables).passed
    assert not judge(vector, mutant.run(vector, profile), mutant.info.observables).passed
    assert len(vector.steps) <= 2 and len(vector.state.mappings) <= 2  # shrunk
