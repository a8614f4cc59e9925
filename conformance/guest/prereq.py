"""What the host needs to build and to boot the guest, and the one apt-get
line that provides what is missing (package names of Debian 12)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .images import SOURCE_GLOB, USR_SRC, find_source

QEMU = "qemu-system-x86_64"
QEMU_PACKAGE = "qemu-system-x86"
SOURCE_PACKAGE = "linux-source-6.12"
BUILD_TOOLS = (
    ("make", "make"),
    ("gcc", "gcc"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("xz", "xz-utils"),
    ("cpio", "cpio"),
    ("tar", "tar"),
    ("perl", "perl"),
)
# objtool needs libelf; the build's certificate tools need OpenSSL's headers.
BUILD_HEADERS = (("libelf.h", "libelf-dev"), ("openssl/evp.h", "libssl-dev"))


@dataclass(frozen=True)
class Need:
    what: str
    package: str


def missing_tools(tools: Sequence[tuple[str, str]], path: str | None) -> list[Need]:
    return [Need(f"{tool} (not on PATH)", package) for tool, package in tools if shutil.which(tool, path=path) is None]


def header_missing(header: str, gcc: str) -> bool:
    try:
        done = subprocess.run(
            [gcc, "-E", "-x", "c", "-", "-o", os.devnull],
            input=f"#include <{header}>\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return True
    return done.returncode != 0


def for_build(path: str | None, usr_src: Path = USR_SRC) -> list[Need]:
    needs = []
    if find_source(usr_src) is None:
        needs.append(Need(f"a kernel source package ({usr_src / SOURCE_GLOB})", SOURCE_PACKAGE))
    needs += missing_tools(BUILD_TOOLS, path)
    gcc = shutil.which("gcc", path=path)
    if gcc is not None:  # without gcc the headers cannot be checked, and gcc is already listed
        needs += [
            Need(f"{header} (C header)", package) for header, package in BUILD_HEADERS if header_missing(header, gcc)
        ]
    return needs


def for_run(path: str | None) -> list[Need]:
    return missing_tools(((QEMU, QEMU_PACKAGE),), path)


def install_line(needs: Sequence[Need]) -> str:
    packages = list(dict.fromkeys(n.package for n in needs))
    sudo = "" if os.geteuid() == 0 else "sudo "
    return f"{sudo}apt-get install -y {' '.join(packages)}"


def advice(needs: Sequence[Need], doing: str) -> str:
    lines = [
        f"cannot {doing}: missing " + "; ".join(n.what for n in needs),
        "install it with (Debian 12):",
        "  " + install_line(needs),
    ]
    return "\n".join(lines)
