"""The guest's PID 1: a shell script written on the host and run by the
host's own /bin/sh through the read-only 9p root."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from .qemu import OUT_TAG, P9

GUEST_OUT = "/run/out"  # where the guest mounts the results share
# Host settings that mean the same inside the guest (the device and the cache do not).
FORWARDED = ("KVM_CONFORMANCE_OBSERVER",)
RESULTS = "results.json"
STATUS = "status"
FACTS = "facts"
# Facts the guest reports about itself, one key=value line each.
FACT_SOURCES = (
    ("kernel", "uname -r"),
    ("tdp_mmu", "cat /sys/module/kvm/parameters/tdp_mmu"),
    ("npt", "cat /sys/module/kvm_amd/parameters/npt"),
)


def start_marker(nonce: str) -> str:
    return f"@@conformance-guest suite-start {nonce}@@"


def end_marker(nonce: str) -> str:
    return f"@@conformance-guest suite-end {nonce}@@"


@dataclass(frozen=True)
class Suite:
    checkout: Path  # the project checkout: the guest cds there
    python: Path  # the checkout's venv interpreter
    args: tuple[str, ...]  # passed through to pytest
    color: bool  # the guest's console is a tty; colour only if the host's output is one too
    columns: int
    env: tuple[tuple[str, str], ...] = ()  # settings of the host's run passed on to the guest's (FORWARDED)

    def pytest_argv(self) -> list[str]:
        return [
            str(self.python),
            "-m",
            "pytest",
            "suites",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "--backend",
            "kernel",
            "--conformance-json",
            f"{GUEST_OUT}/{RESULTS}",
            f"--color={'yes' if self.color else 'no'}",
            *self.args,
        ]


def render(suite: Suite, nonce: str) -> str:
    q = shlex.quote
    facts = "; ".join(f'echo "{key}=$({command} 2>/dev/null)"' for key, command in FACT_SOURCES)
    return f"""#!/bin/sh
# Written by `python -m conformance guest run` (conformance/guest/initscript.py): PID 1 of the guest.
PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin
export PATH
halt() {{ echo "conformance guest: $1"; echo b > /proc/sysrq-trigger; sleep 60; }}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
grep -q ' /dev ' /proc/mounts || mount -t devtmpfs devtmpfs /dev
# The root is read-only: everything written lives on /run (not over the checkout).
mount -t tmpfs -o mode=0755 tmpfs /run || halt "cannot mount a tmpfs on /run"
mkdir -p /dev/shm /dev/hugepages {GUEST_OUT} /run/home /run/tmp
mount -t tmpfs tmpfs /dev/shm
mount -t hugetlbfs hugetlbfs /dev/hugepages
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t 9p -o {P9} {OUT_TAG} {GUEST_OUT} || halt "cannot mount the results share"
export HOME=/run/home TMPDIR=/run/tmp PYTHONDONTWRITEBYTECODE=1 COLUMNS={suite.columns}
{"".join(f"export {name}={q(value)}" + chr(10) for name, value in suite.env)}{{ {facts}; }} > {GUEST_OUT}/{FACTS}
cat {GUEST_OUT}/{FACTS}
cd {q(str(suite.checkout))} || halt {q(f"no checkout at {suite.checkout}")}
echo {q(start_marker(nonce))}
{" ".join(q(a) for a in suite.pytest_argv())}
status=$?
echo "$status" > {GUEST_OUT}/{STATUS}
sync
echo "{end_marker(nonce)} status=$status"
echo b > /proc/sysrq-trigger
sleep 60
"""
