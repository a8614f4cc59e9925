"""Where built guest kernels are kept: one directory per cache key holding
bzImage, the .config and build.json, which is written last, so an entry
without it is not an entry."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Fragment

CACHE_ENV = "KVM_CONFORMANCE_CACHE"
SOURCE_GLOB = "linux-source-*.tar.xz"
USR_SRC = Path("/usr/src")
BOOT_MAGIC_OFFSET = 0x202  # the x86 boot protocol's "HdrS" signature
BOOT_MAGIC = b"HdrS"
META = "build.json"


def cache_root(env: Mapping[str, str]) -> Path:
    """$KVM_CONFORMANCE_CACHE/guest, else <cache home>/kvm-mmu-conformance/guest."""
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser() / "guest"
    home = env.get("XDG_CACHE_HOME", "")
    # XDG: a relative XDG_CACHE_HOME is ignored
    base = Path(home) if os.path.isabs(home) else Path(env.get("HOME") or Path.home()) / ".cache"
    return base / "kvm-mmu-conformance" / "guest"


@dataclass(frozen=True)
class Source:
    """A kernel source package's tarball."""

    tarball: Path
    version: str  # the Debian package's version, else the tarball's size and mtime

    @property
    def package(self) -> str:
        return self.tarball.name.removesuffix(".tar.xz")


def version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.name))


def find_source(usr_src: Path = USR_SRC) -> Source | None:
    """The newest kernel source package's tarball, or None."""
    tarballs = sorted(usr_src.glob(SOURCE_GLOB), key=version_key)
    if not tarballs:
        return None
    tarball = tarballs[-1]
    return Source(tarball, package_version(tarball.name.removesuffix(".tar.xz")) or file_version(tarball))


def package_version(package: str) -> str | None:
    # Found off PATH too: the cache key must not depend on the caller's PATH.
    dpkg_query = shutil.which("dpkg-query") or "/usr/bin/dpkg-query"
    try:
        done = subprocess.run([dpkg_query, "-W", "-f=${Version}", package], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def file_version(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}-{int(stat.st_mtime)}"


def image_key(source: Source, fragment: Fragment) -> str:
    """Readable and unique: source package, its version, the fragment's hash."""
    version = re.sub(r"[^A-Za-z0-9.+~-]", "_", source.version)
    return f"{source.package}_{version}_{fragment.digest()[:12]}"


def boot_problem(path: Path) -> str | None:
    """Why PATH cannot be booted as an x86 kernel, or None."""
    try:
        with path.open("rb") as image:
            image.seek(BOOT_MAGIC_OFFSET)
            magic = image.read(len(BOOT_MAGIC))
    except FileNotFoundError:
        return f"no kernel image at {path}"
    except OSError as exc:
        return f"cannot read the kernel image {path}: {exc.strerror}"
    if magic != BOOT_MAGIC:
        return f"{path} is not a bzImage (no 'HdrS' boot header at offset {BOOT_MAGIC_OFFSET:#x})"
    return None


@dataclass(frozen=True)
class Image:
    directory: Path

    @property
    def key(self) -> str:
        return self.directory.name

    @property
    def bzimage(self) -> Path:
        return self.directory / "bzImage"

    @property
    def config(self) -> Path:
        return self.directory / "config"

    def meta(self) -> dict[str, Any]:
        try:
            meta = json.loads((self.directory / META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def problem(self) -> str | None:
        if not self.meta():
            return f"{self.directory} is not a finished build (no readable {META})"
        return boot_problem(self.bzimage)


def entries(root: Path) -> list[Image]:
    """Finished images under ROOT, newest first."""
    found = [Image(d) for d in root.glob("*") if (d / META).is_file() and not d.name.startswith(".")]
    return sorted(found, key=lambda i: (i.directory / META).stat().st_mtime, reverse=True)


def lookup(root: Path, key: str) -> Image | None:
    image = Image(root / key)
    return image if image.problem() is None else None


def newest_for(root: Path, fragment: Fragment) -> Image | None:
    """The newest good image built from this fragment, whatever its source (no source package at hand)."""
    return next(
        (i for i in entries(root) if i.meta().get("fragment") == fragment.digest() and i.problem() is None), None
    )


def install(root: Path, key: str, bzimage: Path, config: Path, meta: Mapping[str, Any]) -> Image:
    """Put a finished build into the cache atomically: staged beside it, renamed into place."""
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".{key}.{os.getpid()}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    shutil.copyfile(bzimage, staging / "bzImage")
    shutil.copyfile(config, staging / "config")
    (staging / META).write_text(json.dumps(dict(meta), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    final = root / key
    if final.exists():  # --force: the old entry goes only once the new one is complete
        retired = root / f".{key}.{os.getpid()}.retired"
        os.rename(final, retired)
        shutil.rmtree(retired, ignore_errors=True)
    os.rename(staging, final)
    return Image(final)
