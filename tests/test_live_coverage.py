"""`conformance coverage --live`: which mainline event-layer rules live runs
checked, read from results files; the shipped variants pin real vectors."""
from __future__ import annotations

import json
from pathlib import Path

from conformance import livecov
from conformance.cli import main
from conformance.load import load_file, suite_files

ROOT = Path(__file__).resolve().parent.parent
FLAGS = '[flags.basic]\ndescription = "Baseline"\nbug_class = "basic"\nkernel = ["kvm_unmap_gfn_range"]\n'


def vector(ident: str, tdp: bool, pins: str = "", vm: str = "DEFAULT") -> str:
    root = "direct" if tdp else "shadow"
    pin = f'pins = "{pins}"\n' if pins else ""
    return (f'[[vector]]\nid = "{ident}"\ndescription = "d"\nprofiles = ["mainline"]\nflags = ["basic"]\n{pin}'
            f'[vector.vm]\ntype = "{vm}"\ntdp_mmu = {str(tdp).lower()}\n'
            f'[[vector.slot]]\nid = 1\nbase_gfn = 0x200\nnpages = 0x10\n'
            f'[vector.initial]\nmappings = [{{ root = "{root}", gfn = 0x200, level = "4K" }}]\n'
            f'[[vector.step]]\nop = "mmu_notifier_invalidate"\nstart = 0x200\nend = 0x201\n'
            f'[vector.step.expect]\nmappings = []\nflush = true\n\n')


def results(path: Path, **outcomes: str) -> Path:
    path.write_text(json.dumps([{"nodeid": f"n::{v}", "vector": f"s::{v}", "backend": "kernel",
                                 "profile": "mainline", "outcome": o.split(":")[0],
                                 "detail": o.split(":", 1)[1] if ":" in o else ""}
                                for v, o in outcomes.items()]))
    return path


def suite(tmp_path: Path) -> Path:
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "flags.toml").write_text(FLAGS)
    (tmp_path / "suites" / "s.toml").write_text(
        '[suite]\nformat = 1\ndescription = "d"\n\n' + vector("a", False) + vector("b", True)
        + vector("b-live", False, pins="s::b") + vector("c", True) + vector("x", True, vm="SEV"))
    return tmp_path / "suites"


def test_rules_are_live_themselves_through_a_variant_or_not(tmp_path):
    host = results(tmp_path / "host.json", a="passed", **{"b-live": "passed"})
    guest = results(tmp_path / "guest.json", c="skipped:mmu:tdp: TDP MMU off", b="skipped:huge:private: 4K folios")
    report = livecov.check([suite(tmp_path)], [host, guest])
    status = {u.vector.id: (u.status, u.where) for u in report.units}
    assert status == {"s::a": ("itself", ("host.json",)), "s::b": ("variant", ("host.json",)),
                      "s::c": ("not run", ())}  # the SEV vector is out of scope, the variant is no rule
    assert report.passed_items == {"host.json": 2, "guest.json": 0} and report.distinct_passed == 2
    assert not report.ok
    text = livecov.render(report)
    assert "not run      s::c: guest.json: mmu:tdp: TDP MMU off" in text and text.endswith("live coverage: INCOMPLETE")


def test_a_failure_anywhere_marks_the_rule_failed(tmp_path):
    host = results(tmp_path / "host.json", a="passed", b="passed", c="passed")
    guest = results(tmp_path / "guest.json", **{"b-live": "failed:flush: expected true, observed false"})
    report = livecov.check([suite(tmp_path)], [host, guest])
    failed = [u for u in report.units if u.status == "failed"]
    assert [u.vector.id for u in failed] == ["s::b"] and "observed false" in failed[0].why
    assert main(["coverage", str(tmp_path / "suites"), "--live", str(host), "--live", str(guest)]) == 1


def test_every_rule_live_is_ok(tmp_path, capsys):
    host = results(tmp_path / "host.json", a="passed", b="passed", c="passed")
    assert main(["coverage", str(suite(tmp_path)), "--live", str(host)]) == 0
    assert "rules checked live: 3 of 3" in capsys.readouterr().out


def test_every_shipped_pin_names_a_vector_of_the_suite():
    vectors = {v.id: v for path in suite_files([ROOT / "suites"]) for v in load_file(path).vectors}
    pins = {v.id: v.pins for v in vectors.values() if v.pins}
    assert pins and all(target in vectors for target in pins.values())
    assert livecov.check([ROOT / "suites"], []).errors == ()


def test_model_only_states_and_newer_kernels_are_excused_with_why(tmp_path):
    directory = suite(tmp_path)
    extra = vector("d", True).replace('[vector.vm]', 'requires = ["since:6.13"]\n[vector.vm]')
    extra += vector("e", True).replace('level = "4K" }]', 'level = "4K", invalid = true }]')
    (directory / "s.toml").write_text((directory / "s.toml").read_text() + extra)
    host = results(tmp_path / "host.json", a="passed", b="passed", c="passed",
                   d="skipped:since:6.13: the outcome is that of Linux >= 6.13")
    report = livecov.check([directory], [host])
    status = {u.vector.id: (u.status, u.why) for u in report.units}
    assert status["s::d"][0] == "newer kernel" and "needs since:6.13" in status["s::d"][1]
    assert status["s::e"] == ("model-only", livecov.MODEL_ONLY["invalid_roots"])
    assert report.ok
