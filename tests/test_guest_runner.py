"""The emulated-guest runner without booting a guest. The build runs on a
fake source tree whose Makefile plays kbuild; the runner meets a fake
qemu-system-x86_64 first on PATH that plays the guest (console lines, hangs,
results in the out share) and must stop it, report it and leave no process
behind."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from conformance import report
from conformance.guest import build, config, images, initscript, prereq, progress, qemu

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
    assert lines[1].split() == ["kernel", "mainline", "2", "1", "0", "0", "0", "1", "0", "1"]
    assert report.note_lines(rows) == [
        "ignored on kernel/mainline: flush in 1 item(s)",
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
    assert not plan.work.exists() and list((plan.root / "build").iterdir()) == []
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


# -- the runner: a fake QEMU plays the guest


REPO = Path(__file__).resolve().parent.parent


FAKE_QEMU = textwrap.dedent('''\
    #!{python}
    """Plays a guest: MODE says how far it gets."""
    import json, os, re, subprocess, sys, time
    MODE = {mode!r}
    argv = sys.argv[1:]
    out = next(re.search(r"path=([^,]+),mount_tag=out", a).group(1) for a in argv if "mount_tag=out" in a)
    init = re.search(r"init=(\\S+)", argv[argv.index("-append") + 1]).group(1)
    marker = re.search(r"@@conformance-guest suite-start \\w+@@", open(init).read()).group(0)
    end = marker.replace("suite-start", "suite-end")
    # A process QEMU forked: the group kill must reach it. After a panic it holds the console pipe open.
    helper = subprocess.Popen(["sleep", "300"], stdout=None if MODE == "panic" else subprocess.DEVNULL)
    with open(os.path.join(out, "fake.pids"), "w") as pids:
        pids.write(f"{{os.getpid()}} {{helper.pid}}\\n")
    with open(os.path.join(out, "fake.argv"), "w") as f:
        json.dump(argv, f)
    def say(line):
        print(line, flush=True)
    for n in range(60):
        say(f"[    0.{{n:03d}}] boot line {{n}}")
    if MODE == "no-boot":
        time.sleep(300)
    if MODE == "panic":
        say("Kernel panic - not syncing: VFS: Unable to mount root fs")
        sys.exit(0)
    say(marker)
    say("suites/live/memslot.toml ....")
    if MODE == "hang":
        say("suites/live/notifier.toml ..")
        time.sleep(300)
    results = [
        {{"nodeid": "suites/live/memslot.toml::a[kernel:mainline]", "vector": "memslot::a", "backend": "kernel",
          "profile": "mainline", "outcome": "passed", "detail": "", "ignored": [], "where": {{"kernel": "6.12.117"}}}},
        {{"nodeid": "suites/live/memslot.toml::b[kernel:mainline]", "vector": "memslot::b", "backend": "kernel",
          "profile": "mainline", "outcome": "failed", "detail": "flush", "ignored": [], "where": {{"npt": "own"}}}},
    ] if MODE != "nothing" else []
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)
    with open(os.path.join(out, "facts"), "w") as f:
        f.write("kernel=6.12.117-fake\\ntdp_mmu=Y\\nnpt=" + ("N" if "kvm_amd.npt=0" in " ".join(argv) else "Y") + "\\n")
    with open(os.path.join(out, "status"), "w") as f:
        f.write("5\\n" if MODE == "nothing" else "1\\n")
    say(end + " status=1")
    ''')


def fake_path(tmp_path: Path, mode: str | None) -> str:
    """A PATH with sleep, and the fake as qemu-system-x86_64 unless MODE is None (not the real QEMU)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "sleep").exists():
        (bin_dir / "sleep").symlink_to(shutil.which("sleep") or "/bin/sleep")
    if mode is not None:
        fake = bin_dir / prereq.QEMU
        fake.write_text(FAKE_QEMU.format(python=sys.executable, mode=mode))
        fake.chmod(0o755)
    return str(bin_dir)


def runner_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "conformance", "guest", "run", "--python", sys.executable, *args]


def runner_env(tmp_path: Path, path: str) -> dict[str, str]:
    return {**os.environ, "PATH": path, images.CACHE_ENV: str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}


def run_guest(tmp_path: Path, mode: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(runner_argv("--kernel", str(fake_kernel(tmp_path)), *args), cwd=tmp_path,
                          env=runner_env(tmp_path, fake_path(tmp_path, mode)),
                          capture_output=True, text=True, timeout=60)


def out_dir(tmp_path: Path) -> Path:
    [out] = (tmp_path / "cache" / "guest" / "runs").iterdir()
    return out


def fake_pids(tmp_path: Path, wait: float = 0.0) -> list[int]:
    deadline = time.monotonic() + wait
    while True:
        runs = tmp_path / "cache" / "guest" / "runs"
        files = list(runs.glob("*/fake.pids")) if runs.is_dir() else []
        if files and files[0].read_text().endswith("\n"):
            return [int(p) for p in files[0].read_text().split()]
        if time.monotonic() > deadline:
            raise AssertionError("the fake QEMU never started")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def assert_gone(pids: list[int], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if alive(p)], "a fake QEMU process survived"


# -- faults


def test_no_qemu_says_which_package(tmp_path: Path) -> None:
    out = run_guest(tmp_path, None)
    assert out.returncode == 2
    assert "qemu-system-x86_64 (not on PATH)" in out.stdout
    assert "apt-get install -y qemu-system-x86\n" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize("content, message", [
    (None, "no kernel image at {path}"),
    (b"MZ" + b"\0" * 4096, "{path} is not a bzImage (no 'HdrS' boot header at offset 0x202)"),
])
def test_missing_or_broken_kernel_image(tmp_path: Path, content: bytes | None, message: str) -> None:
    image = tmp_path / "vmlinuz"
    if content is not None:
        image.write_bytes(content)
    out = subprocess.run(runner_argv("--kernel", str(image)), env=runner_env(tmp_path, fake_path(tmp_path, "results")),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert message.format(path=image) in out.stdout
    assert "python -m conformance guest build" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_no_cached_image_names_the_build_command(tmp_path: Path) -> None:
    out = subprocess.run(runner_argv(), env=runner_env(tmp_path, fake_path(tmp_path, "results")),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"no guest kernel cached in {tmp_path / 'cache' / 'guest'}" in out.stdout
    assert "`python -m conformance guest build`" in out.stdout


def test_build_without_tools_says_which_packages(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "conformance", "guest", "build"], capture_output=True, text=True,
                         env=runner_env(tmp_path, fake_path(tmp_path, None)), timeout=60)
    assert out.returncode == 2
    assert "cannot build the guest kernel: missing " in out.stdout and "make (not on PATH); gcc (not on PATH)" in out.stdout
    assert re.search(r"^  apt-get install -y (linux-source-6.12 )?make gcc flex bison bc xz-utils cpio tar perl$",
                     out.stdout, re.M), out.stdout
    assert "Traceback" not in out.stdout + out.stderr and not (tmp_path / "cache").exists()


def test_a_guest_python_that_is_not_there(tmp_path: Path) -> None:
    out = run_guest(tmp_path, "results", "--python", str(tmp_path / "no-venv" / "python"))
    assert out.returncode == 2
    assert f"--python {tmp_path / 'no-venv' / 'python'} is not an executable" in out.stdout


def test_guest_that_never_reaches_the_suite_is_stopped(tmp_path: Path) -> None:
    began = time.monotonic()
    out = run_guest(tmp_path, "no-boot", "--boot-timeout", "1.5")
    assert time.monotonic() - began < 15
    assert out.returncode == 3, out.stdout
    assert "the guest did not reach the suite within 1.5 s (--boot-timeout)" in out.stdout
    tail = [line for line in out.stdout.splitlines() if line.startswith("  | ")]
    assert len(tail) == 40 and tail[-1] == "  | [    0.059] boot line 59"
    assert_gone(fake_pids(tmp_path))


def test_guest_that_hangs_in_the_suite_is_stopped(tmp_path: Path) -> None:
    out = run_guest(tmp_path, "hang", "--timeout", "2")
    assert out.returncode == 3, out.stdout
    assert "the guest did not finish within 2 s (--timeout)" in out.stdout
    assert "\nsuites/live/memslot.toml ....\n" in out.stdout  # the suite's part was streamed
    assert "  | suites/live/notifier.toml .." in out.stdout
    assert_gone(fake_pids(tmp_path))


def test_guest_that_panics_is_reported_with_its_console(tmp_path: Path) -> None:
    out = run_guest(tmp_path, "panic")
    assert out.returncode == 3
    assert "the guest stopped before it reached the suite" in out.stdout
    assert "  | Kernel panic - not syncing: VFS: Unable to mount root fs" in out.stdout
    assert (out_dir(tmp_path) / "console.log").read_text().count("boot line") == 60


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_interrupted_runner_stops_the_guest(tmp_path: Path, sig: signal.Signals, status: int) -> None:
    runner = subprocess.Popen(runner_argv("--kernel", str(fake_kernel(tmp_path))), stdout=subprocess.PIPE, text=True,
                              env=runner_env(tmp_path, fake_path(tmp_path, "no-boot")))
    pids = fake_pids(tmp_path, wait=20)
    runner.send_signal(sig)
    stdout, _ = runner.communicate(timeout=20)
    assert runner.returncode == status
    assert "the guest was stopped" in stdout
    assert_gone(pids)


def test_killed_runner_takes_qemu_with_it(tmp_path: Path) -> None:
    runner = subprocess.Popen(runner_argv("--kernel", str(fake_kernel(tmp_path))), stdout=subprocess.DEVNULL,
                              env=runner_env(tmp_path, fake_path(tmp_path, "no-boot")))
    qemu_pid, helper = fake_pids(tmp_path, wait=20)
    runner.kill()
    runner.wait()
    assert_gone([qemu_pid])  # PR_SET_PDEATHSIG
    os.killpg(qemu_pid, signal.SIGKILL)  # the helper QEMU forked is not covered by the death signal


# -- results brought back


def test_results_come_back_with_where_they_ran(tmp_path: Path) -> None:
    saved = tmp_path / "guest.json"
    out = run_guest(tmp_path, "results", "--npt=0", "--conformance-json", str(saved), "--", "-k", "memslot and not x")
    assert out.returncode == 1, out.stdout  # the guest pytest's status
    assert ("results from qemu-tcg guest (emulated AMD SVM): Linux 6.12.117-fake, tdp_mmu=Y, npt=0"
            in out.stdout)
    assert re.search(r"^kernel +mainline +1 +1 +0 +0 +0 +0 +0 +0$", out.stdout, re.M), out.stdout
    assert "\nsuites/live/memslot.toml ....\n" in out.stdout
    saved_doc = json.loads(saved.read_text())
    assert saved_doc["format"] == 1 and saved_doc["runs"][0]["legacy"]  # the fake guest writes the old bare list
    results = saved_doc["results"]
    assert [r["where"] for r in results] == [
        {"machine": "qemu-tcg guest (emulated AMD SVM)", "npt": "0", "kernel": "6.12.117"},
        {"machine": "qemu-tcg guest (emulated AMD SVM)", "npt": "own"},  # a backend's own fact stays
    ]
    argv = json.loads((out_dir(tmp_path) / "fake.argv").read_text())
    assert "kvm_amd.npt=0" in argv[argv.index("-append") + 1]
    script = (out_dir(tmp_path) / "init").read_text()
    assert "--backend kernel --conformance-json /run/out/results.json --color=no -k 'memslot and not x'" in script
    assert_gone(fake_pids(tmp_path))


def test_nothing_collected_in_the_guest_fails(tmp_path: Path) -> None:
    out = run_guest(tmp_path, "nothing", "--quiet")
    assert out.returncode == 5
    assert "exited with status 5 (nothing collected)" in out.stdout
    assert "\nsuites/live/memslot.toml ....\n" not in out.stdout  # --quiet: shown only in the failure's tail
    assert "  | suites/live/memslot.toml ...." in out.stdout


def test_status_shows_the_cache_the_image_and_what_is_missing(tmp_path: Path) -> None:
    env = runner_env(tmp_path, fake_path(tmp_path, "results"))  # the fake QEMU, and no compiler
    status = [sys.executable, "-m", "conformance", "guest", "status"]
    out = subprocess.run(status, env=env, capture_output=True, text=True, timeout=60)
    root = tmp_path / "cache" / "guest"
    assert out.returncode == 1
    assert f"guest cache: {root} (from ${images.CACHE_ENV})" in out.stdout
    assert "image: none for this source and fragment; `python -m conformance guest build` makes it" in out.stdout
    assert re.search(r"^install it with \(Debian 12\):\n  apt-get install -y (linux-source-6.12 )?make gcc flex",
                     out.stdout, re.M), out.stdout
    assert "to run: nothing missing" in out.stdout
    fragment, source = config.load_fragment(), images.find_source()
    key = images.image_key(source, fragment) if source else "any-source"
    config_file = tmp_path / "config"
    config_file.write_text("CONFIG_KVM=y\n")
    images.install(root, key, fake_kernel(tmp_path), config_file, {"fragment": fragment.digest(), "release": "6.12.9"})
    out = subprocess.run(status, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    assert f"image: {root / key / 'bzImage'} (Linux 6.12.9, key {key}," in out.stdout


# -- the command line and the init script


def test_qemu_command_line() -> None:
    boot = qemu.Boot(Path("/k/bzImage"), Path("/c/runs/1/init"), Path("/c/runs/1"), npt=True)
    argv = boot.argv()
    assert argv[:3] == ["qemu-system-x86_64", "-accel", "tcg,thread=multi"]
    assert argv[argv.index("-m") + 1] == "6G" and "-no-reboot" in argv
    assert boot.cmdline().endswith("init=/c/runs/1/init panic=-1 hugepagesz=1G hugepages=2 default_hugepagesz=2M")
    assert "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" in argv
    assert "local,path=/c/runs/1,mount_tag=out,security_model=none" in argv
    assert "kvm_amd.npt=0" not in boot.cmdline()


def test_init_script_is_valid_shell(tmp_path: Path) -> None:
    suite = initscript.Suite(Path("/w/checkout"), Path("/w/checkout/.venv/bin/python"), ("-k", "it's"), False, 100,
                             env=(("KVM_CONFORMANCE_OBSERVER", "retouch"),))
    script = tmp_path / "init"
    script.write_text(initscript.render(suite, "abc123"))
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    text = script.read_text()
    for mount in ("-t proc", "-t sysfs", "-t tmpfs -o mode=0755 tmpfs /run", "-t debugfs", "-t tracefs tracefs "
                  "/sys/kernel/tracing", "-t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /run/out"):
        assert f"mount {mount}" in text
    assert "echo '@@conformance-guest suite-start abc123@@'\n" in text
    assert "export HOME=/run/home TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1" in text
    assert "export KVM_CONFORMANCE_OBSERVER=retouch\n" in text  # forwarded from the host's environment
    assert "/w/checkout/.venv/bin/python -m pytest suites -p no:cacheprovider -p no:xdist" in text
    assert "-k 'it'\"'\"'s'" in text
    assert 'echo "$status" > /run/out/status' in text and text.rstrip().endswith("sleep 60")
