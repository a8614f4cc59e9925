"""The coverage proof: the shipped tables cover every reachable combination
exactly once, and the check reports what is missing or doubled."""
from __future__ import annotations

from pathlib import Path

from conformance import axes, coverage
from conformance.cli import main
from conformance.model import Profile

ROOT = Path(__file__).resolve().parent.parent
FLAGS = '[flags.basic]\ndescription = "Baseline"\nbug_class = "basic"\nkernel = ["kvm_mmu_zap_all"]\n'
COLUMNS = '"vm", "tdp_mmu", "rmaps", "present", "decision", "scope", "flush", "warns"'


def _write(directory: Path, name: str, rows: str) -> None:
    (directory / "flags.toml").write_text(FLAGS)
    (directory / name).write_text(
        '[suite]\nformat = 1\ndescription = "d"\n\n[[table]]\nid = "t"\ndescription = "d"\nprofiles = ["mainline"]\n'
        f'flags = ["basic"]\nop = "zap_all"\ncolumns = [{COLUMNS}]\nrows = [\n  {rows},\n]\n')


def test_shipped_suites_cover_every_reachable_combination_once():
    report = coverage.check([ROOT / "suites"])
    assert report.errors == ()
    for profile in report.profiles:
        assert profile.missing == () and profile.doubled == () and profile.stray == ()
        assert profile.covered == profile.reachable > 0
        assert profile.row_vectors == profile.reachable  # one row vector per combination
        assert profile.vectors == profile.explicit + profile.row_vectors + profile.variants
    by_profile = {p.profile: p for p in report.profiles}
    assert {o.op for o in by_profile[Profile.TDX_V10].ops} == set(axes.V10_SPACE.ops)
    assert {o.op for o in by_profile[Profile.MAINLINE].ops} == set(axes.MAINLINE_SPACE.ops)
    assert report.ok and coverage.render(report).endswith("coverage: OK")


def test_missing_doubled_and_counts_are_reported(tmp_path):
    _write(tmp_path, "a.toml", '["DEFAULT", true, false, "*", "both", "vm", false, []]')
    _write(tmp_path, "b.toml", '["DEFAULT", true, false, "shared", "both", "vm", false, []]')
    report = coverage.check([tmp_path])
    mainline = next(p for p in report.profiles if p.profile is Profile.MAINLINE)
    shared = (("op", "zap_all"), ("vm", "DEFAULT"), ("tdp_mmu", "true"), ("rmaps", "false"), ("present", "shared"))
    assert [combo for combo, _ in mainline.doubled] == [shared]
    assert [where.split(":")[0] for where in mainline.doubled[0][1]] == [str(tmp_path / "a.toml"),
                                                                         str(tmp_path / "b.toml")]
    zap_all = next(o for o in mainline.ops if o.op == "zap_all")
    assert (zap_all.covered, zap_all.reachable) == (2, 36)  # DEFAULT+TDP: present none and shared
    assert len(mainline.missing) == mainline.reachable - 2
    assert (mainline.vectors, mainline.rows_written, mainline.row_vectors) == (3, 2, 3)
    assert not report.ok
    text = coverage.render(report, limit=3)
    assert "doubly covered:" in text and "op=zap_all vm=DEFAULT tdp_mmu=true rmaps=false present=shared" in text
    assert "missing:" in text and "... and" in text and text.endswith("coverage: FAILED")


def test_cli_exit_status(tmp_path, capsys):
    assert main(["coverage", str(ROOT / "suites")]) == 0
    out = capsys.readouterr().out
    assert "profile tdx-v10:" in out and "profile mainline:" in out and "unreachable" in out
    assert main(["coverage", "--list-unreachable", str(ROOT / "suites")]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("tdx-v10: op=")]
    assert len(listed) == 1792 - 336
    assert "tdx-v10: op=zap_all vm=TDX tdp_mmu=false rmaps=false slot_private=false present=none: tdx-needs-tdp-mmu: " \
           "TDX cannot be enabled without the TDP MMU" in listed
    _write(tmp_path, "a.toml", '["DEFAULT", true, false, "*", "both", "vm", false, []]')
    assert main(["coverage", str(tmp_path)]) == 1
    (tmp_path / "bad.toml").write_text("[suite]\nformat = 2\n")
    assert main(["coverage", str(tmp_path)]) == 1
    assert "load error:" in capsys.readouterr().out
