"""The vendor kit through the runner, end to end: pytest runs in a subprocess
on a scratch suite with a vendor backend `acme` registered through a real
entry point. Its `conformance_backend(options)` reads --backend-option
values: `mode=drops-flush` makes it drop every flush, `expectations=FILE`
points BackendInfo.expectations at a file."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

VECTOR = textwrap.dedent('''\
    [[vector]]
    id = "{id}"
    description = "TDX notifier keeps the mirror and flushes"
    profiles = ["mainline"]
    flags = ["{flag}"]

    [vector.vm]
    type = "TDX"
    tdp_mmu = true

    [[vector.slot]]
    id = 1
    base_gfn = 0x200
    npages = 0x400
    flags = ["GUEST_MEMFD"]

    [vector.initial]
    mappings = [
      {{ root = "direct", gfn = 0x8000000200, level = "2M" }},
      {{ root = "mirror", gfn = 0x300, level = "4K" }},
    ]

    [[vector.step]]
    op = "unmap_gfn_range"
    slot = 1
    start = 0x200
    end = 0x600
    attr_filter = ["SHARED"]

    [vector.step.expect]
    mappings = [{{ root = "mirror", gfn = 0x300, level = "4K" }}]
    flush = true
    ''')

SUITE = ('[suite]\nformat = 1\ndescription = "scratch suite"\n\n' + VECTOR.format(id="tdx-notifier", flag="basic")
         + "\n" + VECTOR.format(id="tdx-notifier-flush", flag="flush-rule"))

FLAGS = textwrap.dedent('''\
    [flags.basic]
    description = "plain behaviour"
    bug_class = "basic"
    kernel = ["kvm_unmap_gfn_range"]

    [flags.flush-rule]
    description = "the flush after a zap"
    bug_class = "lost-flush"
    kernel = ["kvm_unmap_gfn_range"]
    ''')

VENDOR = textwrap.dedent('''\
    from dataclasses import replace
    from pathlib import Path

    from conformance import hookimpl
    from conformance_reference.plugin import ReferenceBackend


    class Acme(ReferenceBackend):
        def __init__(self, options):
            self.mode = options.get("mode", "ok")
            file = options.get("expectations")
            self.info = replace(
                ReferenceBackend.info, name="acme", version="2.1",
                details={"options": ",".join(f"{k}={v}" for k, v in sorted(options.items())) or "none"},
                expectations=Path(file).resolve() if file else None)

        def run(self, vector, profile):
            observation = super().run(vector, profile)
            if self.mode == "drops-flush":
                observation = replace(observation, steps=tuple(replace(s, flush=False) for s in observation.steps))
            return observation


    @hookimpl
    def conformance_backend(options):
        return Acme(options)
    ''')

OWN = textwrap.dedent('''\
    backend = "acme"

    [bug.ACME-1]
    title = "flushes are dropped"
    review = "acme lab, 2026-11-30"

    [[expected_failure]]
    pattern = "scratch::tdx-*"
    reason = "no flush after a notifier zap"
    bug = "ACME-1"
    ''')


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "flags.toml").write_text(FLAGS)
    (tmp_path / "suites" / "scratch.toml").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_backend.py").write_text(VENDOR)
    dist = site / "acme_mmu-2.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-mmu\nVersion: 2.1\n")
    (dist / "entry_points.txt").write_text("[kvm_mmu_conformance.backends]\nacme = acme_backend\n")
    return tmp_path


def run(project: Path, *args: str, command: tuple[str, ...] = ("pytest", "-p", "no:cacheprovider", "-rA")
        ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(project / "site"), str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", *command, *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=120)


def summary(out: subprocess.CompletedProcess[str]) -> str:
    return out.stdout.strip().splitlines()[-1]


# ---------------------------------------------------------------- --backend-option


@pytest.mark.parametrize("where", ["isolated", "in-process"])
def test_options_reach_the_backend(project: Path, where: str) -> None:
    placement = ["--in-process", "acme"] if where == "in-process" else []
    out = run(project, "suites", "--backend", "acme", "--backend-option", "acme:mode=drops-flush", *placement)
    assert out.returncode == 1, out.stdout
    assert "2 failed" in summary(out) and "flush: expected true, observed false" in out.stdout
    assert ("isolated in child processes: acme" in out.stdout) == (where == "isolated")
    assert run(project, "suites", "--backend", "acme", *placement).returncode == 0


def test_a_later_option_overrides_an_earlier_one(project: Path) -> None:
    out = run(project, "suites", "--backend", "acme", "--backend-option", "acme:mode=drops-flush",
              "--backend-option", "acme:mode=ok")
    assert out.returncode == 0 and "2 passed" in summary(out), out.stdout


@pytest.mark.parametrize(("option", "message"), [
    ("nope:mode=x", "unknown backend(s) in --backend-option nope; registered: acme, "),
    ("acme-mode", "--backend-option 'acme-mode': expected NAME:KEY=VALUE"),
])
def test_a_bad_option_is_a_usage_error(project: Path, option: str, message: str) -> None:
    out = run(project, "suites", "--backend-option", option)
    assert out.returncode == 4 and message in out.stderr, out.stderr


def test_the_cli_passes_options_too(project: Path) -> None:
    out = run(project, "--backend-option", "acme:mode=x", "--backend-option", "acme:y=1",
              command=("conformance", "backends"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "acme 2.1: available" in out.stdout and "  options: mode=x,y=1" in out.stdout
    out = run(project, "--backend-option", "nope:a=b", command=("conformance", "backends"))
    assert out.returncode == 2 and "unknown backend(s) in --backend-option nope" in out.stderr


# ---------------------------------------------------------------- expectation files


def test_the_backends_own_file_turns_its_failures_into_xfails(project: Path) -> None:
    (project / "acme.toml").write_text(OWN)
    out = run(project, "suites", "--backend", "acme", "--backend-option", "acme:mode=drops-flush",
              "--backend-option", "acme:expectations=acme.toml")
    assert out.returncode == 0, out.stdout
    assert "2 xfailed" in summary(out)
    assert "XFAIL suites/scratch.toml::tdx-notifier[acme:mainline] - bug ACME-1 (acme lab, 2026-11-30): no flush" in \
        out.stdout
    assert re.search(r"^acme +mainline +0 +0 +0 +0 +0 +0 +2 ", out.stdout, re.M), out.stdout


def test_a_listed_item_that_passes_fails_with_where_it_is_listed(project: Path) -> None:
    (project / "acme.toml").write_text(OWN)
    out = run(project, "suites", "--backend", "acme", "--backend-option", "acme:expectations=acme.toml")
    assert out.returncode == 1
    assert (f"passed an item it declares to fail: bug ACME-1 (acme lab, 2026-11-30): no flush after a notifier zap "
            f"({project / 'acme.toml'}:7)") in out.stdout


def test_a_users_file_names_its_backend(project: Path) -> None:
    (project / "mine.toml").write_text(OWN)
    args = ("suites", "--backend", "acme", "--backend-option", "acme:mode=drops-flush", "--expectations", "mine.toml")
    out = run(project, *args)
    assert out.returncode == 0 and "2 xfailed" in summary(out), out.stdout
    (project / "mine.toml").write_text(OWN.replace('backend = "acme"\n', ""))
    out = run(project, *args)
    assert out.returncode == 4
    assert 'mine.toml:6: expected_failure[0]: names no backend: a file given with --expectations needs' in out.stderr
    (project / "mine.toml").write_text(OWN.replace('backend = "acme"', 'backend = "zeta"'))
    out = run(project, *args)
    assert out.returncode == 4
    assert "mine.toml:1: backend: names backend 'zeta', which is not registered; registered: acme, " in out.stderr


def test_a_broken_file_of_a_backend_keeps_it_from_running(project: Path) -> None:
    (project / "acme.toml").write_text(OWN.replace('reason = "no flush after a notifier zap"\n', ""))
    out = run(project, "suites", "--backend", "acme", "--backend", "reference",
              "--backend-option", "acme:expectations=acme.toml")
    assert out.returncode == 1, out.stdout
    assert (f"plugin error: backend acme: expectations file: {project / 'acme.toml'}:7: expected_failure[0].reason: "
            "missing required key") in out.stdout
    assert "[acme:" not in out.stdout and "2 passed" in summary(out)  # the other backend runs


def test_the_cli_lists_a_backends_file_and_fails_on_a_broken_one(project: Path) -> None:
    (project / "acme.toml").write_text(OWN)
    out = run(project, "--backend-option", "acme:expectations=acme.toml", command=("conformance", "backends"))
    assert out.returncode == 0 and f"  expectations: {project / 'acme.toml'}" in out.stdout, out.stdout
    (project / "acme.toml").write_text(OWN.replace('bug = "ACME-1"', 'bug = "ACME-2"'))
    out = run(project, "--backend-option", "acme:expectations=acme.toml", command=("conformance", "backends"))
    assert out.returncode == 1
    assert (f"plugin error: backend acme: expectations file: {project / 'acme.toml'}:10: expected_failure[0].bug: "
            "unknown bug 'ACME-2'") in out.stdout


# ---------------------------------------------------------------- stale entries


STALE = OWN + '\n[[expected_failure]]\npattern = "scratch::gone"\nreason = "a vector since removed"\n'


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]])
def test_an_entry_matching_nothing_fails_a_whole_run(project: Path, xdist: list[str]) -> None:
    (project / "acme.toml").write_text(STALE)
    out = run(project, "suites", "--backend", "acme", "--backend-option", "acme:mode=drops-flush",
              "--backend-option", "acme:expectations=acme.toml", *xdist)
    assert out.returncode == 1, out.stdout
    assert "2 xfailed" in summary(out)
    assert (f"expectations error: {project / 'acme.toml'}:12: pattern 'scratch::gone' matches no collected item "
            "of backend acme (a stale entry: remove or fix it)") in out.stdout


@pytest.mark.parametrize("narrowed", [
    ["suites", "-k", "flush"],
    ["suites", "--profile", "mainline"],
    ["suites/scratch.toml"],
    ["suites/scratch.toml::tdx-notifier"],
    ["suites", "--flag", "basic"],
    ["suites", "--deselect", "suites/scratch.toml::tdx-notifier[acme:mainline]"],
])
def test_a_narrowed_run_judges_no_entry(project: Path, narrowed: list[str]) -> None:
    (project / "acme.toml").write_text(STALE)
    out = run(project, *narrowed, "--backend", "acme", "--backend-option", "acme:mode=drops-flush",
              "--backend-option", "acme:expectations=acme.toml")
    assert out.returncode == 0, out.stdout
    assert "expectations error" not in out.stdout and "xfailed" in summary(out)


def test_entries_of_a_backend_with_no_items_are_not_judged(project: Path) -> None:
    (project / "mine.toml").write_text(STALE)
    out = run(project, "suites", "--backend", "reference", "--expectations", "mine.toml")
    assert out.returncode == 0 and "expectations error" not in out.stdout, out.stdout


# ---------------------------------------------------------------- selection by flag and bug class


@pytest.mark.parametrize(("args", "passed"), [
    (["--flag", "flush-rule"], ["tdx-notifier-flush"]),
    (["--bug-class", "lost-flush"], ["tdx-notifier-flush"]),
    (["--flag", "basic", "--bug-class", "lost-flush"], ["tdx-notifier", "tdx-notifier-flush"]),
    (["-m", "flag_flush_rule"], ["tdx-notifier-flush"]),
    (["-m", "bug_class_basic and not flag_flush_rule", "--strict-markers"], ["tdx-notifier"]),
])
def test_selection_by_flag(project: Path, args: list[str], passed: list[str]) -> None:
    out = run(project, "suites", "--backend", "reference", *args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(re.findall(r"^PASSED suites/scratch.toml::(\S+)\[reference", out.stdout, re.M)) == passed
    assert (f"{2 - len(passed)} deselected" in summary(out)) == (len(passed) < 2)


@pytest.mark.parametrize(("args", "message"), [
    (["--flag", "nope"], "--flag 'nope': unknown flag; known: basic, flush-rule"),
    (["--bug-class", "nope"], "--bug-class 'nope': unknown bug class; known: basic, edge-case, over-zap, under-zap"),
])
def test_an_unknown_flag_or_class_is_a_usage_error(project: Path, args: list[str], message: str) -> None:
    out = run(project, "suites", *args)
    assert out.returncode == 4 and message in out.stderr, out.stderr


def test_a_flag_a_file_defines_itself_is_known(project: Path) -> None:
    local = SUITE.replace('description = "scratch suite"\n', 'description = "scratch suite"\n\n'
                          '[suite.flags.own]\ndescription = "d"\nbug_class = "alias"\nkernel = []\n', 1)
    (project / "suites" / "scratch.toml").write_text(local.replace('flags = ["basic"]', 'flags = ["own"]'))
    out = run(project, "suites", "--backend", "reference", "--flag", "own")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed, 1 deselected" in summary(out)


def test_a_broken_registry_stops_only_a_run_that_selects_by_flag(project: Path) -> None:
    (project / "suites" / "flags.toml").write_text(FLAGS.replace('bug_class = "basic"', 'bug_class = "nope"'))
    out = run(project, "suites", "--backend", "reference")
    assert out.returncode == 1 and "vector file not loaded: suites/scratch.toml" in out.stdout, out.stdout
    out = run(project, "suites", "--backend", "reference", "--flag", "basic")
    assert out.returncode == 4
    assert "the flag registry cannot be read: " in out.stderr and "flags.basic.bug_class: unknown bug_class 'nope'" \
        in out.stderr, out.stderr
