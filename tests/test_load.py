"""The loader: the documented example, malformed files, registry and line index."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from conformance import capabilities
from conformance.lines import LineIndex, render
from conformance.load import SymlinkLoopWarning, load_all, suite_files, LoadError, SuiteFile, load_file, load_flags
from conformance.model import (
    MEM_LOG_DIRTY_PAGES, MEMORY_ATTRIBUTE_PRIVATE, Decision, Kind, Level, Mapping, MemslotDelete, MemslotSetFlags,
    MmuNotifierInvalidate, Profile, Root,
    SetMemoryAttributes, Slot, UnmapGfnRange, Vm, VmType,
)

HERE = Path(__file__).parent
ROOT = HERE.parent
EXAMPLE = HERE / "data" / "example.toml"
MALFORMED = HERE / "malformed"
TDX_SHARED = 1 << 39

# filename -> (line, key path, substring of the message)
EXPECTED: dict[str, tuple[int, str, str]] = {
    "syntax_error.toml": (3, "<toml>", "Illegal character"),
    "missing_suite.toml": (0, "suite", "missing required key"),
    "bad_format.toml": (2, "suite.format", "unsupported format 2"),
    "unknown_top_key.toml": (5, "vectors", "allowed keys: suite, vector, table"),
    "unknown_vector_key.toml": (10, "vector[0].name", "unknown key 'name'; allowed keys: id, description"),
    "missing_id.toml": (5, "vector[0].id", "missing required key"),
    "bad_id.toml": (6, "vector[0].id", "bad id 'Bad Id'"),
    "duplicate_id.toml": (14, "vector[1].id", "duplicate id 'same' (first used at line 5)"),
    "string_for_int.toml": (15, "vector[0].slot[0].base_gfn", "expected an integer, got string '0x100'"),
    "int_for_bool.toml": (14, "vector[0].vm.tdp_mmu", "expected a boolean (true/false), got integer 1"),
    "bool_as_int.toml": (16, "vector[0].slot[0].npages", "expected an integer, got boolean true"),
    "unknown_profile.toml": (8, "vector[0].profiles[1]", "unknown Profile 'tdx-v11'; allowed: tdx-v10, mainline"),
    "empty_profiles.toml": (8, "vector[0].profiles", "at least one profile"),
    "unknown_flag.toml": (9, "vector[0].flags[1]", "unknown flag 'no-such-flag'"),
    "vm_not_in_profile.toml": (13, "vector[0].vm.type", "SNP does not exist in profile tdx-v10; allowed: DEFAULT, TDX"),
    "tdx_without_tdp.toml": (14, "vector[0].vm.tdp_mmu", "cannot happen: TDX cannot be enabled without the TDP MMU"),
    "tdp_off_without_rmaps.toml": (15, "vector[0].vm.rmaps", "cannot happen: with the TDP MMU off every SPTE is a shadow page"),
    "gpaw_non_tdx.toml": (15, "vector[0].vm.gpaw", "only meaningful for TDX"),
    "bad_gpaw.toml": (15, "vector[0].vm.gpaw", "must be 48 or 52, got 50"),
    "overlapping_slots.toml": (20, "vector[0].slot[1].base_gfn",
                               "slot 2 [0x100, 0x300) overlaps slot 1 [0x200, 0x400) in as_id 0"),
    "slot_beyond_gfn_space.toml": (16, "vector[0].slot[0].npages", "beyond the 40-bit GFN space"),
    "slot_tdx_alias.toml": (16, "vector[0].slot[0].npages", "slot covers the TDX shared-bit alias"),
    "as_id1_private_vm.toml": (15, "vector[0].slot[0].as_id", "as_id 1 needs a VM without private memory"),
    "private_slot_dirty_log.toml": (17, "vector[0].slot[0].flags", "cannot have LOG_DIRTY_PAGES"),
    "misaligned_2m.toml": (17, "vector[0].initial.mappings[1].gfn", "misaligned: gfn 0x500"),
    "mapping_outside_slot.toml": (17, "vector[0].initial.mappings[1].gfn", "mapping outside any slot"),
    "mirror_non_tdx.toml": (16, "vector[0].initial.mappings[0].root", "mirror roots only exist in TDX VMs"),
    # explicit vectors obey the reachability rules of docs/spec.md section 1.1
    "private_leaf_default_vm.toml": (16, "vector[0].initial.mappings[0].kind",
                                     "private mappings exist only in VMs with private memory"),
    "private_range_default_vm.toml": (15, "vector[0].initial.private[0]",
                                      "a VM without private memory supports no memory attribute"),
    "mirror_leaf_non_private_slot.toml": (17, "vector[0].initial.mappings[0].kind",
                                          "a private leaf needs a private-capable slot (GUEST_MEMFD/PRIVATE); slot 0"),
    "snp_private_leaf_non_gmem_slot.toml": (16, "vector[0].initial.mappings[0].kind",
                                            "a private leaf needs a private-capable slot"),
    # every integer has a bound
    "slot_id_too_big.toml": (14, "vector[0].slot[0].id", "0x100000000000000000000 is above the maximum 0x7fff"),
    "errno_too_big.toml": (18, "vector[0].step[0].expect.errno", "is above the maximum 0xfff"),
    "errno_negative.toml": (18, "vector[0].step[0].expect.errno", "-0x16 is below the minimum 0"),
    "address_beyond_u64.toml": (14, "vector[0].step[0].address", "is above the maximum 0xffffffffffffffff"),
    # per-vector errors and ids
    "bad_second_of_three.toml": (19, "vector[1].step[0].bogus", "unknown key 'bogus'; allowed keys: op, expect"),
    "pins_bad_id.toml": (10, "vector[0].pins", "bad vector id 'no id here'"),
    "table_row_id_duplicate_vector.toml": (14, "table[0].id", "duplicate id 't' (first used at line 5)"),
    "huge_mirror.toml": (17, "vector[0].initial.mappings[1].level", "mirror mappings must be 4K, got 2M"),
    "tdx_direct_no_shared_bit.toml": (17, "vector[0].initial.mappings[1].gfn", "lacks the shared bit 0x8000000000"),
    "kind_required.toml": (17, "vector[0].initial.mappings[1].kind", "kind required"),
    "overlapping_leaves.toml": (18, "vector[0].initial.mappings[2].gfn",
                                "gfn=0x210 4K shared overlaps as0 direct gfn=0x200 2M shared (line 16)"),
    "unknown_op.toml": (13, "vector[0].step[0].op", "unknown op 'zap_everything'; allowed: unmap_gfn_range"),
    "unknown_op_param.toml": (14, "vector[0].step[0].slot", "unknown key 'slot'; allowed keys: op, expect"),
    "missing_op_param.toml": (15, "vector[0].step[1].end", "missing required key"),
    "v10_param_in_mainline.toml": (19, "vector[0].step[0].range_flags", "range_flags is tdx-v10-only"),
    "v10_quirk.toml": (13, "vector[0].step[0].op", "disable_quirk is mainline-only"),
    "unmap_outside_slot.toml": (17, "vector[0].step[0].end", "of slot 0 [0, 0x1000)"),
    "punch_hole_shared_slot.toml": (15, "vector[0].step[0].slot", "gmem_punch_hole needs a private slot"),
    "deleted_slot.toml": (19, "vector[0].step[1].slot", "slot 0 does not exist at this step"),
    "decision_on_event.toml": (19, "vector[0].step[0].expect.decision", "only observable for call-layer ops"),
    "errno_on_call.toml": (14, "vector[0].step[0].expect.errno", "only observable for event-layer ops"),
    "unknown_warn.toml": (18, "vector[0].step[0].expect.warns[1]", "unknown WarnSite 'kvm_zap_gfn_ranges'"),
    "unknown_requires.toml": (10, "vector[0].requires[1]", "unknown capability tag 'huge:512G'"),
    "table_unknown_column.toml": (11, "table[0].columns[8]", "unknown column 'errno'; allowed for zap_gfn_range in mainline: vm, tdp_mmu, rmaps, present, decision"),
    "table_missing_column.toml": (11, "table[0].columns", "missing column 'attr_filter'"),
    "table_row_length.toml": (14, "table[0].rows[1]", "table 't' row 1: has 7 cells but columns lists 8"),
    "table_bad_cell.toml": (15, "table[0].rows[2].present", "table 't' row 2: column present: unknown present 'all'"),
    "table_duplicate_row.toml": (15, "table[0].rows[2]", "duplicate row: DEFAULT-tdp_mmu-no_rmaps-shared is also named by row 0"),
    "table_invalid_row_state.toml": (14, "table[0].rows[1].rmaps", "table 't' row 1: names only combinations that cannot happen: a TDX guest cannot run a nested guest"),
    "tdx_range_past_alias.toml": (15, "vector[0].step[0].end", "passes the TDX shared bit 0x800000000: the mainline walk"),
    "table_wildcard_unreachable.toml": (13, "table[0].rows[0].tdp_mmu", "names only combinations that cannot happen: TDX cannot be enabled"),
    "table_any_too_short.toml": (13, "table[0].rows[0].present.any", "list at least two values"),
    "table_two_profiles.toml": (8, "table[0].profiles", "a table lists exactly one profile"),
    "table_op_not_in_space.toml": (10, "table[0].op", "unknown tdx-v10 table op 'set_memory_attributes'"),
    "table_bad_scope.toml": (13, "table[0].rows[0].scope", "column scope: unknown scope 'everything'"),
    "count_zero.toml": (16, "vector[0].initial.mappings[0].count", "0 is below the minimum 1"),
    "count_beyond_gfn_space.toml": (12, "vector[0].step[0].expect.mappings[0].count",
                                    "0x201 4K leaves from 0xfffffffe00 extend beyond the 40-bit GFN space"),
    "count_outside_slot.toml": (16, "vector[0].initial.mappings[0].gfn",
                                "as0 direct gfn=0x500 4K shared covers memslot gfns [0x500, 0x501), not inside one slot"),
    "count_crosses_alias.toml": (12, "vector[0].step[0].expect.mappings[0].count",
                                 "the run's last leaf (as0 mirror gfn=0x800000000 4K private): mirror gfn"),
    "host_huge_misaligned.toml": (15, "vector[0].initial.host_huge[1]", "not aligned to its 2M host pages (0x200 GFNs)"),
    "host_huge_outside_slot.toml": (15, "vector[0].initial.host_huge[1]", "host page [0, 0x200) is not inside one slot"),
    "host_huge_bad_size.toml": (15, "vector[0].initial.host_huge[0][2]", "unknown host page size '4K'; allowed: 2M, 1G"),
    "since_not_mainline.toml": (10, "vector[0].requires[0]", "'since:6.13' names a mainline kernel release"),
    "since_too_new.toml": (10, "vector[0].requires[1]", "'since:6.19' is newer than the mainline profile's Linux 6.18"),
    "linux_in_requires.toml": (10, "vector[0].requires[0]", "'linux:6.18' is what a backend declares"),
    "set_flags_unknown_name.toml": (16, "vector[0].step[0].flags[1]", "unknown memslot flag 'DIRTY'"),
    "set_flags_v10.toml": (14, "vector[0].step[0].op", "memslot_set_flags is mainline-only"),
    "badregistry/uses_bad_registry.toml": (8, "flags.broken.bug_class", "unknown bug_class 'crash'; allowed: basic"),
    "reading/unterminated_multiline_string.toml": (11, "<toml>", 'multi-line string """ opened on this line'),
    "reading/unterminated_multiline_literal.toml": (13, "<toml>", "multi-line string ''' opened on this line"),
    "reading/unclosed_array.toml": (13, "<toml>", "the array '[' opened on this line is never closed"),
    "reading/unclosed_inline_table.toml": (11, "<toml>", "the inline table '{' opened on this line is never closed"),
    "reading/deep_array.toml": (11, "<toml>", "nested more than 32 levels deep"),
    "reading/deep_inline_table.toml": (11, "<toml>", "nested more than 32 levels deep"),
    "reading/byte_order_mark.toml": (1, "<file>", "byte order mark (U+FEFF)"),
    "reading/bare_cr.toml": (6, "<toml>", "bare carriage return (CR without LF) at column 9"),
    "reading/invalid_utf8.toml": (3, "<file>", "not valid UTF-8: byte 0xe9 at byte offset 37"),
    "reading/line_separators.toml": (16, "vector[0].vm.gpaw", "must be 48 or 52, got 50"),
    "reading/crlf.toml": (15, "vector[0].vm.gpaw", "must be 48 or 52, got 50"),
    "reading/tabs_and_quoted_keys.toml": (15, "vector[0].vm.gpaw", "must be 48 or 52, got 50"),
    "reading/first_element_on_key_line.toml": (16, "vector[0].initial.mappings[2].gfn", "misaligned: gfn 0x500"),
}


def _docs_example() -> str:
    text = (ROOT / "docs" / "vectors.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- example: tests/data/example.toml -->\n```toml\n(.*?)```", text, re.S)
    assert match, "docs/vectors.md lost its example block"
    return match.group(1)


def _load_error(path: Path) -> LoadError:
    with pytest.raises(LoadError) as info:
        load_file(path).strict()
    return info.value


# ---------------------------------------------------------------- the documented example


@pytest.fixture(scope="module")
def example() -> SuiteFile:
    return load_file(EXAMPLE)


def test_docs_example_is_the_test_copy():
    assert _docs_example() == EXAMPLE.read_text(encoding="utf-8")


def test_example_suite(example):
    assert example.path == str(EXAMPLE)
    assert example.description == "Worked example from docs/vectors.md"
    assert [v.id for v in example.vectors] == [
        "example::tdx-notifier-keeps-private",
        "example::smm-notifier-as1-only",
        "example::v10-unmap/TDX-tdp_mmu-no_rmaps-slot_private-0-SHARED-no_flush_in-both",
        "example::v10-unmap/TDX-tdp_mmu-no_rmaps-slot_private-SET_MEM_ATTR-SHARED-no_flush_in-shared",
        "example::v10-unmap/TDX-tdp_mmu-no_rmaps-slot_private-SET_MEM_ATTR-SHARED-no_flush_in-both",
        "example::v10-unmap/DEFAULT-no_tdp_mmu-rmaps-no_slot_private-0-SHARED-no_flush_in-shared",
    ]
    assert [v.line for v in example.vectors] == [18, 66, 131, 132, 132, 133]
    assert all(v.path == str(EXAMPLE) for v in example.vectors)


def test_example_tdx_vector(example):
    vector = example.vectors[0]
    assert vector.description == "An mmu notifier invalidation zaps shared aliases and keeps private leaves"
    assert vector.profiles == {Profile.TDX_V10}
    assert [f.name for f in vector.flags] == ["doc-example"]
    flag = vector.flags[0]
    assert flag.bug_class == "basic"
    assert flag.kernel == ("kvm_unmap_gfn_range", "kvm_tdp_mmu_unmap_gfn_range")
    assert flag.links == ("https://docs.kernel.org/virt/kvm/x86/mmu.html",)
    state = vector.state
    assert state.vm == Vm(VmType.TDX, tdp_mmu=True, rmaps=False, gpaw=52, slot_zap_all=True)
    assert state.slots == (Slot(id=1, base_gfn=0x200, npages=0x400, private=True),)
    assert state.private_ranges == ((0x400, 0x480),)
    mirror = {Mapping(0, Root.MIRROR, g, Level.L4K, Kind.PRIVATE) for g in (0x400, 0x401)}
    assert state.mappings == mirror | {
        Mapping(0, Root.DIRECT, TDX_SHARED | 0x200, Level.L2M, Kind.SHARED),
        Mapping(0, Root.DIRECT, TDX_SHARED | 0x480, Level.L4K, Kind.SHARED),
    }
    unmap, delete = vector.steps
    assert unmap.op == UnmapGfnRange(slot=1, start=0x200, end=0x600)
    assert unmap.line == 44
    assert unmap.expect.mappings == mirror
    assert (unmap.expect.flush, unmap.expect.decision, unmap.expect.warns) == (True, Decision.SHARED, frozenset())
    assert unmap.expect.errno is None
    assert delete.op == MemslotDelete(1) and delete.line == 61
    assert delete.expect.errno == 0 and delete.expect.asserted() == ("errno",)
    assert vector.requires == {"vm:TDX", "mmu:tdp", "layer:call", "layer:event", "huge:2M", "private_slot"}


def test_example_smm_vector(example):
    vector = example.vectors[1]
    assert vector.profiles == {Profile.MAINLINE}
    assert vector.state.vm == Vm(VmType.DEFAULT, tdp_mmu=False, rmaps=True)
    assert [s.as_id for s in vector.state.slots] == [0, 1]
    assert vector.state.private_ranges == ()
    assert all(m.kind is Kind.SHARED and m.root is Root.SHADOW for m in vector.state.mappings)
    notifier, attrs, delete = vector.steps
    assert notifier.op == MmuNotifierInvalidate(as_id=1, start=0, end=0x400)
    assert notifier.expect.mappings == {Mapping(0, Root.SHADOW, 0x10, Level.L4K, Kind.SHARED)}
    assert attrs.op == SetMemoryAttributes(address=0, size=0x1000000, attributes=MEMORY_ATTRIBUTE_PRIVATE)
    assert attrs.expect.errno == 22
    assert delete.expect.mappings == frozenset() and delete.expect.flush is None
    assert {"smm", "mmu:shadow", "memory_attributes", "layer:event"} <= vector.requires
    assert "layer:call" not in vector.requires


def test_example_table_rows(example):
    rows = example.vectors[2:]
    assert all(v.profiles == {Profile.TDX_V10} and len(v.steps) == 1 for v in rows)
    assert rows[1].steps[0].op.attr == 1 and rows[1].steps[0].expect.decision is Decision.BOTH
    assert rows[0].description.startswith("tdx-v10 kvm_unmap_gfn_range on the standard fixture: TDX-")
    # the wildcard row: TDX without the TDP MMU and a shadow MMU without rmaps cannot happen
    assert rows[3].state.vm == Vm(VmType.DEFAULT, tdp_mmu=False, rmaps=True)
    assert dict(rows[3].row)["rmaps"] == "true" and rows[3].row[0] == ("op", "unmap_gfn_range")


# ---------------------------------------------------------------- malformed files


def test_every_malformed_file_has_an_expectation():
    files = {p.relative_to(MALFORMED).as_posix() for p in MALFORMED.rglob("*.toml") if p.name != "flags.toml"}
    assert files == set(EXPECTED)
    assert len(EXPECTED) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed(name):
    line, key, substring = EXPECTED[name]
    err = _load_error(MALFORMED / name)
    assert (err.line, err.key) == (line, key), str(err)
    assert substring in err.message, str(err)
    assert str(err) == f"{err.path}:{err.line}: {err.key}: {err.message}"


def test_registry_error_names_the_registry():
    err = _load_error(MALFORMED / "badregistry" / "uses_bad_registry.toml")
    assert Path(err.path).resolve() == (MALFORMED / "badregistry" / "flags.toml").resolve()


def test_flags_toml_is_not_a_vector_file():
    err = _load_error(MALFORMED / "flags.toml")
    assert "flag registry" in err.message


def test_missing_file():
    err = _load_error(MALFORMED / "no-such-file.toml")
    assert (err.line, err.key) == (0, "<file>")


# ---------------------------------------------------------------- flag registry


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


SUITE_WITH_LOCAL_FLAG = """\
[suite]
format = 1
description = "local flags"

[suite.flags.local-one]
description = "a local flag"
bug_class = "warn"
kernel = []
"""


def test_load_flags_walks_up_and_merges(tmp_path):
    _write(tmp_path / "flags.toml", (ROOT / "suites" / "flags.toml").read_text())
    suite = _write(tmp_path / "a" / "b" / "s.toml", SUITE_WITH_LOCAL_FLAG)
    flags = load_flags(suite)
    assert "v10-bug-c-lost-flush" in flags and flags["v10-bug-c-lost-flush"].bug_class == "lost-flush"
    assert flags["local-one"].bug_class == "warn" and flags["local-one"].kernel == ()
    registry = load_flags(ROOT / "suites" / "flags.toml")
    assert set(flags) == set(registry) | {"local-one"}


def test_seed_registry_has_the_flags_the_brief_names(tmp_path):
    suite = _write(tmp_path / "s.toml", "[suite]\nformat = 1\ndescription = 'x'\n")
    _write(tmp_path / "flags.toml", (ROOT / "suites" / "flags.toml").read_text())
    assert {"basic", "huge-leaf-partial", "tdx-alias", "v10-bug-c-lost-flush", "v10-bug-a-uninit-zap-private",
            "v10-bug-b-memtype-zaps-private", "rmap-ignores-filter", "slot-zap-all-quirk"} <= set(load_flags(suite))


def test_local_flag_cannot_redefine_registry_flag(tmp_path):
    _write(tmp_path / "flags.toml", "[flags.local-one]\ndescription = 'x'\nbug_class = 'basic'\nkernel = []\n")
    suite = _write(tmp_path / "s.toml", SUITE_WITH_LOCAL_FLAG)
    with pytest.raises(LoadError) as info:
        load_flags(suite)
    assert info.value.line == 5 and "already defined" in info.value.message


# ---------------------------------------------------------------- line index


def test_line_index_paths():
    text = """\
top = 1
[[vector]]
"quoted.key" = 2
vm.type = "TDX"   # dotted
[[vector.step]]
s = '''
[[vector]]
'''
[[vector.step]]
[vector.step.expect]
mappings = [
  { gfn = 1 },  # ] in a comment
  "a, [b", { gfn = 2,
    level = "4K" },
]
[[vector]]
[[vector.step]]
"""
    index = LineIndex(text)
    assert index.line(("top",)) == 1
    assert index.line(("vector", 0, "quoted.key")) == 3
    assert index.line(("vector", 0, "vm", "type")) == 4
    assert index.line(("vector", 0, "vm")) == 4
    assert index.line(("vector", 0, "step", 1)) == 9
    assert index.line(("vector", 0, "step", 1, "expect", "mappings", 0, "gfn")) == 12
    assert index.line(("vector", 0, "step", 1, "expect", "mappings", 1)) == 13
    assert index.line(("vector", 0, "step", 1, "expect", "mappings", 2, "level")) == 14
    assert index.line(("vector", 1)) == 16
    assert index.line(("vector", 1, "step", 0, "op")) == 17
    assert index.line(("nowhere",)) == 0


def test_render():
    assert render(("vector", 2, "step", 0, "expect", "mappings", 3, "level")) == \
        "vector[2].step[0].expect.mappings[3].level"


# ---------------------------------------------------------------- runs, host pages, flags-only changes, releases

FLAGS_SUITE = """\
[suite]
format = 1
description = "runs and host pages"

[[vector]]
id = "v"
description = "d"
profiles = ["mainline"]
flags = ["basic"]
vm = { type = "DEFAULT", tdp_mmu = true }
slot = [{ id = 1, base_gfn = 0x40000, npages = 0x40000 }]

[vector.initial]
host_huge = [[0x40400, 0x40800], [0x40000, 0x40200]]
mappings = [{ root = "direct", gfn = 0x40400, level = "4K", count = 3 }, { root = "direct", gfn = 0x40200, level = "2M" }]

[[vector.step]]
op = "memslot_set_flags"
slot = 1
flags = ["LOG_DIRTY_PAGES"]

[[vector.step]]
op = "memslot_set_flags"
slot = 1
flags = 0x9
"""


def test_runs_host_pages_and_flags_only_changes(tmp_path):
    _write(tmp_path / "flags.toml", (ROOT / "suites" / "flags.toml").read_text())
    (vector,) = load_file(_write(tmp_path / "s.toml", FLAGS_SUITE)).vectors
    leaves = {(m.gfn, m.level) for m in vector.state.mappings}
    assert leaves == {(0x40400, Level.L4K), (0x40401, Level.L4K), (0x40402, Level.L4K), (0x40200, Level.L2M)}
    assert vector.state.host_huge == ((0x40000, 0x40200, Level.L2M), (0x40400, 0x40800, Level.L2M))
    assert [s.op for s in vector.steps] == [MemslotSetFlags(1, MEM_LOG_DIRTY_PAGES), MemslotSetFlags(1, 0x9)]
    assert {"memslot:set_flags", "dirty_logging", "host_huge", "huge:2M"} <= vector.requires
    assert "huge:1G" not in vector.requires


def test_release_tags():
    everything = capabilities.everything()
    assert capabilities.met("since:6.13", everything) and capabilities.met("since:6.18", everything)
    assert not capabilities.met("since:6.13", frozenset({"linux:6.12"}))
    assert capabilities.met("since:6.13", frozenset({"linux:6.13"})) and capabilities.met("smm", frozenset({"smm"}))
    assert capabilities.linux_tag("6.18.44-fc-v857") == "linux:6.18" and capabilities.linux_tag("x") is None
    assert capabilities.known("since:6.13") and not capabilities.known("since:06.1")
    assert not capabilities.known("before:6.13")


def test_a_bad_vector_leaves_the_others_loaded():
    suite = load_file(MALFORMED / "bad_second_of_three.toml")
    assert [v.id for v in suite.vectors] == ["bad_second_of_three::good-one", "bad_second_of_three::good-two"]
    assert [e.id for e in suite.errors] == ["bad_second_of_three::bad"]


def test_validate_reports_every_bad_vector(tmp_path):
    """Not just each file's first: two bad vectors in one file, one in another."""
    import shutil
    import subprocess
    import sys

    shutil.copy(MALFORMED / "flags.toml", tmp_path / "flags.toml")
    text = (MALFORMED / "bad_second_of_three.toml").read_text()
    (tmp_path / "a.toml").write_text(text.replace('id = "good-two"', 'id = "bad two"'))
    shutil.copy(MALFORMED / "errno_negative.toml", tmp_path / "b.toml")
    out = subprocess.run([sys.executable, "-m", "conformance", "validate", str(tmp_path)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    lines = [line for line in out.stdout.splitlines() if ": " in line and line.startswith(str(tmp_path))]
    assert [line.split(": ")[1] for line in lines] == ["vector[1].step[0].bogus", "vector[2].id",
                                                       "vector[0].step[0].expect.errno"], out.stdout
    assert "1 vectors loaded from 2 file(s), 3 error(s)" in out.stdout


def test_vector_ids_carry_the_suite_relative_path():
    ids = {v.id for v in load_all([ROOT / "suites"]).vectors}
    assert "live/memslot::delete-shadow-slot-zaps-slot" in ids or any(i.startswith("live/memslot::") for i in ids)
    assert any(i.startswith("event/memslot::") for i in ids)
    assert any(i.startswith("tables/mainline-events::mmu-notifier/") for i in ids)
    assert not any(i.count("::") != 1 for i in ids)


def test_nested_registry_ids_clash_and_the_later_is_an_error(tmp_path):
    import shutil

    shutil.copy(MALFORMED / "flags.toml", tmp_path / "flags.toml")
    (tmp_path / "sub").mkdir()
    shutil.copy(MALFORMED / "flags.toml", tmp_path / "sub" / "flags.toml")
    text = (MALFORMED / "bad_second_of_three.toml").read_text()
    good = text.replace(', bogus = 1', '')
    (tmp_path / "x.toml").write_text(good)
    (tmp_path / "sub" / "x.toml").write_text(good)
    loaded = load_all([tmp_path])
    assert len(loaded.vectors) == 3 and len(loaded.errors) == 3
    assert all("duplicate vector id 'x::" in e.message and e.path.endswith("sub/x.toml") for e in loaded.errors)


def test_symlinked_directory_loop_is_walked_once_with_a_warning(tmp_path):
    import shutil

    shutil.copy(MALFORMED / "flags.toml", tmp_path / "flags.toml")
    (tmp_path / "x.toml").write_text((MALFORMED / "bad_second_of_three.toml").read_text().replace(", bogus = 1", ""))
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    (tmp_path / "again.toml").symlink_to(tmp_path / "x.toml")
    with pytest.warns(SymlinkLoopWarning, match="a symlink loop"):
        files = suite_files([tmp_path])
    assert [f.name for f in files] == ["again.toml"] or [f.name for f in files] == ["x.toml"]


GOOD_NEIGHBOUR = """

[[vector]]
id = "good-neighbour"
description = "a good vector beside a bad one"
profiles = ["mainline"]
flags = ["basic"]
vm = { type = "DEFAULT", tdp_mmu = true }
step = [{ op = "zap_all" }]
"""


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if "/" not in n))  # reading/: not TOML; badregistry/
def test_the_good_vector_beside_each_bad_one_still_loads(name, tmp_path):
    """Each corpus case again with a good vector after it: a bad vector or
    table fails alone (same line, key and message); only a problem with the
    file itself fails the whole file."""
    import shutil

    shutil.copy(MALFORMED / "flags.toml", tmp_path / "flags.toml")
    line, key, substring = EXPECTED[name]
    copy = tmp_path / Path(name).name
    copy.write_bytes((MALFORMED / name).read_bytes() + GOOD_NEIGHBOUR.encode())
    try:
        suite = load_file(copy)
    except LoadError as err:  # the file itself is at fault: header, flags, syntax
        assert (err.line, err.key) == (line, key) and substring in err.message
        assert not key.startswith(("vector[", "table[")), str(err)
        return
    assert "good-neighbour" in [v.id.split("::")[1] for v in suite.vectors]
    first = suite.errors[0].error
    assert (first.line, first.key) == (line, key) and substring in first.message, str(first)
