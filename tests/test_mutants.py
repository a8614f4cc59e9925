"""The mutant backends (plugins/mutants) and the kill matrix: every mutant
must be caught by some vector, and mutants never leak into ordinary runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from conformance.cli import main
from conformance.load import load_file
from conformance.model import Profile
from conformance.registry import discover
from conformance.verdict import judge

mutants = pytest.importorskip("conformance_mutants", reason="plugins/mutants is not installed")
from conformance_mutants.catalogue import MUTANTS  # noqa: E402
from conformance_mutants.variants import Edit, StaleMutant, load_variant  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def test_every_mutant_is_killed(capsys):
    assert len(MUTANTS) >= 25 and len({m.name for m in MUTANTS}) == len(MUTANTS)
    assert main(["kill-matrix", str(ROOT / "suites")]) == 0
    out = capsys.readouterr().out
    assert f"{len(MUTANTS)}/{len(MUTANTS)} mutants killed" in out and "SURVIVED" not in out


def test_a_surviving_mutant_fails_the_command(tmp_path, capsys):
    # a suite holding only a table the mutant cannot see through survives it
    only = ROOT / "suites" / "tables" / "mainline-zaps.toml"
    assert main(["kill-matrix", "--mutant", "mutant:v10-invalid-attr-silent", str(only)]) == 1
    assert "SURVIVED" in capsys.readouterr().out


def test_mutants_are_not_ordinary_backends_and_leave_the_reference_alone():
    registry = discover()
    registry.collect_mutants()
    assert not [name for name in registry.backends if name.startswith("mutant:")]
    assert len(registry.mutants) == len(MUTANTS)
    vector = next(v for v in load_file(ROOT / "suites" / "tables" / "v10-zaps.toml").vectors
                  if "v10-bug-b-memtype-zaps-private" in {f.name for f in v.flags} and dict(v.row)["present"] == "both")
    mutant = registry.mutants["mutant:v10-memtype-zaps-private"]
    reference = registry.backends["reference"]
    assert not judge(vector, mutant.run(vector, Profile.TDX_V10), mutant.info.observables).passed
    assert judge(vector, reference.run(vector, Profile.TDX_V10), reference.info.observables).passed


def test_a_stale_edit_fails_loudly():
    with pytest.raises(StaleMutant, match="matches 0 times"):
        load_variant("stale", (Edit("mmu", "no such text", ""),))
    with pytest.raises(StaleMutant, match="no module nosuch"):
        load_variant("nomodule", (Edit("nosuch", "x", "y"),))


def test_the_matrix_leaves_out_vectors_over_the_leaf_budget(capsys):
    from conformance import killmatrix

    flags = ROOT / "suites" / "event" / "memslot-flags.toml"
    vectors = load_file(flags).vectors
    big = [v for v in vectors if killmatrix.leaf_count(v) > killmatrix.DEFAULT_MAX_LEAVES]
    assert [v.id for v in big] == ["event/memslot-flags::enable-then-disable-1g"]  # a split 1G page: 262144 leaves
    kept, left_out = killmatrix.within_budget(vectors, killmatrix.DEFAULT_MAX_LEAVES)
    assert left_out == big and len(kept) == len(vectors) - 1
    assert killmatrix.within_budget(vectors, 0) == (list(vectors), [])
    assert main(["kill-matrix", "--mutant", "mutant:range-end-inclusive", str(flags)]) == 0
    assert "left out 1 vector(s) with more than 65536 leaves" in capsys.readouterr().out
