"""The guest kernel's build without building a kernel: the config fragment,
the cache key and entries, progress, and the build on a fake source tree
whose Makefile plays kbuild."""
from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from conformance import report
from conformance.guest import build, config, images, prereq, progress

# -- the config fragment, the cache, progress


def fake_kernel(tmp_path: Path) -> Path:
    image = tmp_path / "bzImage"
    image.write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 1024)
    return image


def test_fragment_hash_and_cache_key() -> None:
    fragment = config.load_fragment()
    assert {"KVM", "KVM_AMD", "KVM_SW_PROTECTED_VM", "EVENT_TRACING", "HUGETLBFS", "TRANSPARENT_HUGEPAGE",
            "9P_FS"} <= set(fragment.require)
    doc = {"base": "tinyconfig", "enable": ["KVM"], "disable": ["KVM_XEN"], "require": ["KVM"], "passes": 2}
    base = config.parse_fragment(doc, "t")
    source = images.Source(Path("/usr/src/linux-source-6.12.tar.xz"), "6.12.117-1~deb12u1")
    key = images.image_key(source, base)
    assert key.startswith("linux-source-6.12_6.12.117-1~deb12u1_")
    assert images.image_key(source, config.parse_fragment({**doc, "objects_estimate": 9}, "t")) == key
    assert images.image_key(source, config.parse_fragment({**doc, "require": []}, "t")) == key
    changed = [config.parse_fragment({**doc, "enable": ["KVM", "KVM_AMD"]}, "t"),
               config.parse_fragment({**doc, "disable": []}, "t"),
               config.parse_fragment({**doc, "passes": 1}, "t"),
               config.parse_fragment({**doc, "base": "allnoconfig"}, "t")]
    keys = {images.image_key(source, f) for f in changed} | {key}
    assert len(keys) == 5
    assert images.image_key(images.Source(source.tarball, "6.12.118-1"), base) != key


def test_fragment_comments_do_not_change_the_key(tmp_path: Path) -> None:
    copy = tmp_path / "kernel-config.toml"
    copy.write_text("# another comment\n" + config.FRAGMENT.read_text())
    assert config.load_fragment(copy).digest() == config.load_fragment().digest()


@pytest.mark.parametrize("doc, error", [
    ({"enable": ["KVM"], "disable": ["KVM"]}, "both enabled and disabled: KVM"),
    ({"enable": ["CONFIG_KVM=y"]}, "enable must be a list of option names"),
    ({"passes": 0}, "passes must be a positive integer"),
    ({"bases": "tinyconfig"}, "unknown key(s) bases"),
])
def test_bad_fragment(doc: dict[str, object], error: str) -> None:
    with pytest.raises(config.FragmentError, match=re.escape(error)):
        config.parse_fragment(doc, "t")


def test_configure_commands_and_checks() -> None:
    fragment = config.parse_fragment({"enable": ["KVM", "EXPERT"], "disable": ["KVM_XEN"], "require": ["KVM"],
                                      "passes": 2}, "t")
    apply = ["scripts/config", "--file", ".config", "-e", "KVM", "-e", "EXPERT", "-d", "KVM_XEN"]
    assert config.commands(fragment) == [["make", "tinyconfig"], apply, ["make", "olddefconfig"],
                                         apply, ["make", "olddefconfig"]]
    values = config.read_config("CONFIG_KVM=m\n# CONFIG_EXPERT is not set\nCONFIG_KVM_XEN=y\nCONFIG_9P_FS=y\n")
    assert values == {"KVM": "m", "EXPERT": "n", "KVM_XEN": "y", "9P_FS": "y"}
    assert config.unmet(values, ("KVM", "9P_FS", "HUGETLBFS")) == ["CONFIG_KVM=m", "CONFIG_HUGETLBFS is not set"]
    assert config.not_applied(values, fragment) == ["enable EXPERT: CONFIG_EXPERT is not set",
                                                    "disable KVM_XEN: CONFIG_KVM_XEN=y"]


def test_no_source_package_or_tools(tmp_path: Path) -> None:
    needs = prereq.for_build(str(tmp_path), usr_src=tmp_path)
    assert needs[0] == prereq.Need(f"a kernel source package ({tmp_path}/linux-source-*.tar.xz)", "linux-source-6.12")
    line = prereq.install_line(needs)
    assert line.endswith("apt-get install -y linux-source-6.12 make gcc flex bison bc xz-utils cpio tar perl")
    assert "cannot build the guest kernel: missing a kernel source package" in prereq.advice(needs, "build the guest kernel")


def test_newest_source_package(tmp_path: Path) -> None:
    for name in ("linux-source-6.9.tar.xz", "linux-source-6.12.tar.xz", "linux-source-6.10.tar.xz"):
        (tmp_path / name).write_bytes(b"x")
    found = images.find_source(tmp_path)
    assert found is not None and found.tarball.name == "linux-source-6.12.tar.xz"


def test_cache_location(tmp_path: Path) -> None:
    assert images.cache_root({images.CACHE_ENV: "/c", "XDG_CACHE_HOME": "/x"}) == Path("/c/guest")
    assert images.cache_root({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/kvm-mmu-conformance/guest")
    assert images.cache_root({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path("/h/.cache/kvm-mmu-conformance/guest")


def test_cache_entries_are_whole_or_absent(tmp_path: Path) -> None:
    root = tmp_path / "guest"
    (root / "half-built").mkdir(parents=True)  # bzImage but no build.json: an interrupted install
    (root / "half-built" / "bzImage").write_bytes(fake_kernel(tmp_path).read_bytes())
    config_file = tmp_path / ".config"
    config_file.write_text("CONFIG_KVM=y\n")
    image = images.install(root, "k1", fake_kernel(tmp_path), config_file, {"objects": 1234})
    assert images.lookup(root, "half-built") is None and images.lookup(root, "k1") == image
    assert [i.key for i in images.entries(root)] == ["k1"]
    again = images.install(root, "k1", fake_kernel(tmp_path), config_file, {"objects": 1300})
    assert again.meta() == {"objects": 1300}
    assert sorted(p.name for p in root.iterdir()) == ["half-built", "k1"]  # no staging left


def test_progress_from_kbuild_output() -> None:
    assert progress.is_object("  CC      kernel/fork.o")
    assert progress.is_object("  AS      arch/x86/entry/entry_64.o")
    assert not progress.is_object("  LD      vmlinux.o") and not progress.is_object("  HOSTCC  scripts/kallsyms")
    assert not progress.is_object("  CC      scripts/mod/devicetable-offsets.s")
    now = [100.0]
    meter = progress.Meter(expected=1000, clock=lambda: now[0], every=5.0)
    lines = []
    for n in range(400):
        now[0] += 0.125  # 8 objects a second
        lines.append(meter.feed(f"  CC      dir/file{n}.o"))
    shown = [line for line in lines if line]
    assert len(shown) == 10  # one every 5 s over 50 s
    assert shown[0] == "guest build: 40/~1000 objects (4%), 5s elapsed, about 2m00s left"
    assert shown[-1] == "guest build: 400/~1000 objects (40%), 50s elapsed, about 1m15s left"
    assert progress.Snapshot(5, 1000, 3.0).line() == "guest build: 5/~1000 objects, 3s elapsed"
    assert progress.Snapshot(1100, 1000, 90.0).line() == "guest build: 1100/~1000 objects, 1m30s elapsed, linking soon"


def test_matrix_lines_from_result_dicts() -> None:
    rows = [{"backend": "kernel", "profile": "mainline", "outcome": o, "ignored": i, "detail": "d"}
            for o, i in (("passed", []), ("passed", ["x: flush"]), ("skipped", []), ("failed", []))]
    lines = report.matrix_lines(rows)
    assert lines[0].split() == ["backend", "profile", *report.OUTCOMES, "ignored-obs"]
    assert lines[1].split() == ["kernel", "mainline", "2", "1", "0", "1", "0", "1"]
    assert report.note_lines(rows) == [
        "ignored on kernel/mainline: flush in 1 item(s) (not declared by the backend, or withheld with a note)",
        "skipped 1 on kernel: d"]


# -- the build, on a fake source tree whose Makefile plays kbuild


FAKE_MAKEFILE = """\
tinyconfig:
\t@echo "CONFIG_64BIT=y" > .config
olddefconfig:
\t@true
bzImage:
\t@for i in 1 2 3 4 5; do echo "  CC      dir/obj$$i.o"; done
\t@mkdir -p arch/x86/boot
\t@if [ -n "$$FAKE_FAIL" ]; then printf partial > arch/x86/boot/bzImage; echo "error: out of luck"; exit 2; fi
\t@head -c 514 /dev/zero > arch/x86/boot/bzImage; printf HdrS >> arch/x86/boot/bzImage
kernelrelease:
\t@echo 6.12.0-fake
"""


FAKE_SCRIPTS_CONFIG = """\
#!/bin/sh
file=$2; shift 2
while [ $# -gt 0 ]; do
  case $1 in -e) echo "CONFIG_$2=y" >> "$file";; -d) echo "# CONFIG_$2 is not set" >> "$file";; esac
  shift 2
done
"""


def fake_source(tmp_path: Path) -> images.Source:
    tree = tmp_path / "src" / "linux-source-6.12"
    (tree / "scripts").mkdir(parents=True)
    (tree / "Makefile").write_text(FAKE_MAKEFILE)
    (tree / "scripts" / "config").write_text(FAKE_SCRIPTS_CONFIG)
    (tree / "scripts" / "config").chmod(0o755)
    tarball = tmp_path / "linux-source-6.12.tar.xz"
    with tarfile.open(tarball, "w:xz") as archive:
        archive.add(tree, arcname=tree.name)
    return images.Source(tarball, "6.12.0-1")


def fake_plan(tmp_path: Path, require: list[str]) -> build.Plan:
    fragment = config.parse_fragment({"enable": ["KVM", "9P_FS"], "disable": ["KVM_XEN"], "require": require}, "t")
    return build.Plan(fake_source(tmp_path), fragment, tmp_path / "cache", jobs=1, expected_objects=5)


def test_build_installs_a_whole_image_and_removes_the_tree(tmp_path: Path) -> None:
    plan = fake_plan(tmp_path, ["KVM", "9P_FS"])
    said: list[str] = []
    clock = iter(range(0, 1000, 3)).__next__  # each reading 3 s later: progress lines are due
    image = build.build(plan, said.append, clock=clock)
    assert images.lookup(plan.root, plan.key) == image and images.boot_problem(image.bzimage) is None
    meta = image.meta()
    assert (meta["release"], meta["objects"], meta["fragment"]) == ("6.12.0-fake", 5, plan.fragment.digest())
    assert "CONFIG_KVM=y" in image.config.read_text()
    assert not plan.work.exists()
    assert any(re.fullmatch(r"guest build: \d/~5 objects.*", line) for line in said), said
    assert said[-1].startswith("guest build: Linux 6.12.0-fake, 5 objects, ")


def test_build_without_a_required_option_fails_and_caches_nothing(tmp_path: Path) -> None:
    plan = fake_plan(tmp_path, ["KVM", "HUGETLBFS"])
    with pytest.raises(build.BuildError, match="lacks required options: CONFIG_HUGETLBFS is not set"):
        build.build(plan, lambda line: None)
    assert images.entries(plan.root) == []


def test_interrupted_build_is_no_cache_entry_and_the_next_continues(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    plan = fake_plan(tmp_path, ["KVM"])
    monkeypatch.setenv("FAKE_FAIL", "1")
    with pytest.raises(build.BuildError, match=r"(?s)`make -j1 bzImage` failed with status 2.*error: out of luck"):
        build.build(plan, lambda line: None)
    assert (plan.work / "linux-source-6.12" / "arch/x86/boot/bzImage").read_bytes() == b"partial"
    assert images.lookup(plan.root, plan.key) is None and images.entries(plan.root) == []
    monkeypatch.delenv("FAKE_FAIL")
    said: list[str] = []
    build.build(plan, said.append)
    assert "guest build: reusing the source tree an earlier run left" in said
    assert images.lookup(plan.root, plan.key) is not None
