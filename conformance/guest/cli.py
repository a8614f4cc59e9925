"""`python -m conformance guest build|run|status`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import build, config, images, prereq, run


def say(line: str) -> None:
    print(line, flush=True)  # flushed: progress must reach a CI log as it happens


def register(sub: argparse._SubParsersAction[Any]) -> None:
    guest = sub.add_parser(
        "guest",
        help="build a guest kernel, boot it under QEMU's emulated AMD SVM and run the suite inside it (docs/guest.md)",
    )
    commands = guest.add_subparsers(dest="guest_command", required=True)
    b = commands.add_parser("build", help="build the guest kernel into the cache (reused when cached)")
    b.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 1, help="parallel make jobs (default: CPUs)")
    b.add_argument("--force", action="store_true", help="build even if this image is cached")
    b.add_argument(
        "--source",
        type=Path,
        help=f"a kernel source tarball (default: the newest {images.USR_SRC / images.SOURCE_GLOB})",
    )
    b.set_defaults(func=cmd_build)
    r = commands.add_parser(
        "run",
        help="boot the cached kernel and run the suite inside it with --backend kernel",
        description=(
            "Boot the guest kernel under QEMU TCG and run `pytest suites --backend kernel` inside it; "
            "arguments after -- go to that pytest."
        ),
    )
    r.add_argument(
        "--npt",
        type=int,
        choices=(0, 1),
        default=1,
        help="1: the guest's KVM uses nested paging and the TDP MMU (default); 0: its shadow MMU",
    )
    r.add_argument(
        "--timeout",
        type=float,
        default=2400.0,
        metavar="S",
        help="stop the guest after this long in all (default 2400)",
    )
    r.add_argument(
        "--boot-timeout",
        type=float,
        default=180.0,
        metavar="S",
        help="stop the guest if the suite has not started after this long (default 180)",
    )
    r.add_argument(
        "--conformance-json", type=Path, metavar="PATH", help="write the results, each with where it ran, as JSON"
    )
    r.add_argument("--kernel", type=Path, metavar="BZIMAGE", help="boot this kernel instead of the cached one")
    r.add_argument(
        "--python",
        type=Path,
        metavar="PATH",
        help="the interpreter the guest runs the suite with (default: the checkout's .venv/bin/python)",
    )
    r.add_argument("--quiet", "-q", action="store_true", help="show the guest's pytest output only if it fails")
    r.add_argument("pytest_args", nargs="*", metavar="-- PYTEST-ARGS", help="passed to the guest's pytest")
    r.set_defaults(func=cmd_run)
    s = commands.add_parser("status", help="the cache, the cached image, and what is missing to build or run")
    s.set_defaults(func=cmd_status)


def source_for(arg: Path | None) -> images.Source | None:
    if arg is None:
        return images.find_source()
    return images.Source(arg, images.file_version(arg)) if arg.is_file() else None


def cmd_build(args: argparse.Namespace) -> int:
    try:
        fragment = config.load_fragment()
    except config.FragmentError as err:
        say(f"guest build: bad config fragment: {err}")
        return 2
    if args.source is not None and not args.source.is_file():
        say(f"guest build: no source tarball at {args.source}")
        return 2
    needs = [n for n in prereq.for_build(None) if args.source is None or n.package != prereq.SOURCE_PACKAGE]
    source = source_for(args.source)
    if needs or source is None:
        say(prereq.advice(needs, "build the guest kernel"))
        return 2
    root = images.cache_root(os.environ)
    key = images.image_key(source, fragment)
    cached = images.lookup(root, key)
    if cached is not None and not args.force:
        say(f"guest build: cached, nothing to do: {cached.bzimage} (--force rebuilds)")
        return 0
    plan = build.Plan(source, fragment, root, max(args.jobs, 1), measured_objects(root) or fragment.objects_estimate)
    try:
        build.build(plan, say)
    except build.BuildError as err:
        say(f"guest build failed: {err}")
        return 1
    except KeyboardInterrupt:
        say(f"guest build interrupted; nothing was cached. The next `guest build` continues in {plan.work}")
        return 130
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    request = run.Request(
        npt=bool(args.npt),
        boot_timeout=args.boot_timeout,
        timeout=args.timeout,
        json_out=args.conformance_json,
        kernel=args.kernel,
        python=args.python,
        quiet=args.quiet,
        pytest_args=tuple(args.pytest_args),
    )
    return run.run(request, os.environ, say)


def measured_objects(root: Path) -> int | None:
    """The object count of the newest cached build: a better estimate than the fragment's."""
    counts = [i.meta().get("objects") for i in images.entries(root)]
    return next((c for c in counts if isinstance(c, int) and c > 0), None)


def cache_origin(env: Mapping[str, str]) -> str:
    if env.get(images.CACHE_ENV):
        return f"${images.CACHE_ENV}"
    return "$XDG_CACHE_HOME" if os.path.isabs(env.get("XDG_CACHE_HOME", "")) else "~/.cache"


def cmd_status(args: argparse.Namespace) -> int:
    root = images.cache_root(os.environ)
    say(f"guest cache: {root} (from {cache_origin(os.environ)})")
    source = images.find_source()
    say(f"source package: {source.tarball} ({source.version})" if source else "source package: none found")
    try:
        fragment: config.Fragment | None = config.load_fragment()
    except config.FragmentError as err:
        fragment = None
        say(f"config fragment: unusable: {err}")
    image = None
    if fragment is not None:
        say(f"config fragment: {config.FRAGMENT} (sha256 {fragment.digest()[:12]})")
        key = images.image_key(source, fragment) if source else None
        image = images.lookup(root, key) if key else images.newest_for(root, fragment)
        if image is not None:
            meta = image.meta()
            say(
                f"image: {image.bzimage} (Linux {meta.get('release', '?')}, key {image.key}, "
                f"built {meta.get('built', '?')} in {meta.get('seconds', '?')} s)"
            )
        else:
            say("image: none for this source and fragment; `python -m conformance guest build` makes it")
    others = [i for i in images.entries(root) if image is None or i.directory != image.directory]
    for other in others:
        say(f"other cached image: {other.key}")
    for tree in sorted((root / "build").glob("*/")):
        say(f"unfinished build tree: {tree} (`guest build` continues it)")
    build_needs, run_needs = prereq.for_build(None), prereq.for_run(None)
    say("to build: nothing missing" if not build_needs else prereq.advice(build_needs, "build"))
    say("to run: nothing missing" if not run_needs else prereq.advice(run_needs, "run"))
    return 0 if image is not None and not run_needs else 1
