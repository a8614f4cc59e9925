"""`python -m conformance` / `conformance`: inspect backends and vector files."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import backend_options, coverage, killmatrix, livecov, select, vendor_cli
from .contract import BackendInfo
from .guest import cli as guest_cli
from .load import Loaded, SymlinkLoopWarning, load_all
from .model import Profile
from .registry import Registry, discover
from .report_cli import register as register_report


def describe(info: BackendInfo) -> list[str]:
    status = f"unavailable: {info.unavailable}" if info.unavailable else "available"
    lines = [
        f"{info.name} {info.version}: {status}",
        "  profiles:    " + ", ".join(sorted(p.value for p in info.profiles)),
        "  layers:      " + ", ".join(sorted(layer.value for layer in info.layers)),
        "  VM types:    " + ", ".join(sorted(t.value for t in info.vm_types)),
        "  observables: " + ", ".join(sorted(o.value for o in info.observables)),
        "  capabilities: " + (", ".join(sorted(info.capabilities)) or "none"),
    ]
    lines += [f"  expectations: {info.expectations}"] if info.expectations else []
    lines += [f"  missing {tag}: {why}" for tag, why in sorted(info.explanations.items())]
    lines += [f"  {key}: {value}" for key, value in sorted(info.details.items())]
    return lines


def cmd_backends(args: argparse.Namespace) -> int:
    """Every registered backend, constructed where a run would construct it
    (other distributions' in a child process); fails on a plugin error."""
    registry = Registry()
    try:
        options = backend_options.parse(args.backend_option)
        choice = select.choose(registry, [], args.skip_backend, options=options)
    except ValueError as err:
        print(f"backends: {err}", file=sys.stderr)
        return 2
    select.construct(registry, choice, seconds=60.0, memory_bytes=4 << 30)
    vendor_cli.check_expectations(registry)
    try:
        for error in registry.errors:  # first: it is why the command fails
            print(f"plugin error: {error.source}: {error.message}")
        for name, backend in sorted(registry.backends.items()):
            print(
                "\n".join(describe(backend.info) + (["  runs: in a child process"] if name in choice.isolated else []))
            )
        if not registry.backends:
            print("no backends registered")
    finally:
        for name in choice.isolated:
            if name in registry.backends:
                registry.backends[name].close()  # type: ignore[attr-defined]
    return 1 if registry.errors else 0


def _load(paths: list[str]) -> Loaded:
    """Every file under the paths; warnings (a symlink loop) printed as they come."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SymlinkLoopWarning)
        loaded = load_all(paths)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    return loaded


def cmd_validate(args: argparse.Namespace) -> int:
    """Every bad vector, not just each file's first."""
    loaded = _load(args.paths)
    for err in loaded.errors:
        print(err)
    print(f"{len(loaded.vectors)} vectors loaded from {loaded.files} file(s), {len(loaded.errors)} error(s)")
    return 1 if loaded.errors else 0


def cmd_list(args: argparse.Namespace) -> int:
    loaded = _load(args.paths)
    for err in loaded.errors:
        print(err)
    for v in loaded.vectors:
        print(f"{v.id}  [{','.join(sorted(p.value for p in v.profiles))}]  {v.description}")
    return 1 if loaded.errors else 0


def cmd_coverage(args: argparse.Namespace) -> int:
    if args.live:
        live = livecov.check(args.paths, args.live, args.live_backend)
        print(livecov.render(live, args.verbose))
        return 0 if live.ok else 1
    report = coverage.check(args.paths)
    if args.list_unreachable:
        for profile in report.profiles:
            print("\n".join(coverage.unreachable_lines(profile.profile)))
    print(coverage.render(report, limit=args.limit))
    return 0 if report.ok else 1


def cmd_kill_matrix(args: argparse.Namespace) -> int:
    registry = discover()
    registry.collect_mutants()
    for error in registry.errors:
        print(f"plugin error: {error.source}: {error.message}")
    mutants = [m for name, m in sorted(registry.mutants.items()) if not args.mutant or name in args.mutant]
    if not mutants:
        print("no mutants registered (install plugins/mutants)")
        return 1
    loaded = _load(args.paths)
    for err in loaded.errors:
        print(err)
    if loaded.errors:
        return 1
    vectors, left_out = killmatrix.within_budget(list(loaded.vectors), args.max_leaves)
    results = killmatrix.run_matrix(mutants, vectors)
    print(killmatrix.render(results, Path.cwd()))
    if left_out:
        print(
            f"left out {len(left_out)} vector(s) with more than {args.max_leaves} leaves (--max-leaves 0 runs "
            f"them): " + ", ".join(v.id for v in left_out)
        )
    if args.killers:
        for result in results:
            print(f"{result.name}: " + (", ".join(result.killers[: args.killers]) or "-"))
    return 1 if any(r.survived for r in results) or registry.errors else 0


def cmd_fuzz(args: argparse.Namespace) -> int:
    from . import fuzz  # Hypothesis is needed here only

    registry = discover()
    registry.collect_mutants()
    pool = {**registry.backends, **registry.mutants}
    names = args.backend or [n for n, b in sorted(registry.backends.items()) if not b.info.unavailable]
    unknown = [n for n in names if n not in pool]
    if unknown:
        print(f"unknown backend(s): {', '.join(unknown)}; known: {', '.join(sorted(pool))}")
        return 2
    names = sorted(names, key=lambda n: (n != args.proposer, n))  # the proposer's observation becomes the expectation
    backends = [pool[n] for n in names]
    profiles = [Profile(p) for p in args.profile] or list(Profile)
    print(f"fuzzing {args.examples} cases over {', '.join(names)} ({', '.join(p.value for p in profiles)})")
    finding = fuzz.search(backends, profiles, args.examples, args.seed)
    if finding is None:
        print("no disagreement found")
        return 0
    path = fuzz.write_finding(finding, Path(args.out), args.seed)
    print("disagreement:\n  " + "\n  ".join(finding.differences))
    print(f"written: {path}")
    return 1


def cmd_schema(args: argparse.Namespace) -> int:
    """The published JSON Schemas: print one, write them, or check the shipped ones."""
    from . import json_schema

    if args.write:
        for path in json_schema.write():
            print(f"written: {path}")
        return 0
    if args.check:
        stale = json_schema.stale()
        for name in stale:
            print(f"stale: {name} (regenerate with: python -m conformance schema --write)")
        return 1 if stale else 0
    document = json_schema.PUBLISHED[f"{args.which}.schema.json"]
    print(json_schema.render(document), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """The installed (released) suite through pytest; the rest of the line goes to pytest."""
    from . import packaged

    return packaged.run(args.pytest_args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="conformance", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser(
        "backends",
        help="each registered backend, what it supports or why it cannot run; fails if a backend cannot be loaded",
    )
    listing.add_argument(
        "--skip-backend",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this registered backend out (neither loaded nor listed)",
    )
    listing.add_argument(
        "--backend-option",
        action="append",
        default=[],
        metavar=backend_options.FORMAT,
        help="a setting for one backend, as pytest's --backend-option (repeatable)",
    )
    listing.set_defaults(func=cmd_backends)
    for name, func, text in (
        ("validate", cmd_validate, "load vector files and report errors"),
        ("list", cmd_list, "list vectors with their profiles"),
        (
            "coverage",
            cmd_coverage,
            "check that decision tables cover every reachable combination exactly once; count vectors",
        ),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("paths", nargs="*", default=["suites"])
        p.set_defaults(func=func, limit=20, list_unreachable=False)
    kill = sub.add_parser("kill-matrix", help="run the suite against every mutant backend; fail if one survives")
    kill.add_argument("paths", nargs="*", default=["suites"])
    kill.add_argument("--mutant", action="append", default=[], help="only this mutant (repeatable)")
    kill.add_argument("--killers", type=int, default=0, metavar="N", help="also list up to N killing items per mutant")
    kill.add_argument(
        "--max-leaves",
        type=int,
        default=killmatrix.DEFAULT_MAX_LEAVES,
        metavar="N",
        help="leave out vectors holding more than N leaves in any state (default %(default)s; 0: none)",
    )
    kill.set_defaults(func=cmd_kill_matrix)
    fz = sub.add_parser("fuzz", help="differential fuzzing across backends; writes a TOML vector per disagreement")
    fz.add_argument(
        "--backend",
        action="append",
        default=[],
        help="backends (and mutants) to compare; default every available backend",
    )
    fz.add_argument("--profile", action="append", default=[], choices=[p.value for p in Profile])
    fz.add_argument("--examples", type=int, default=2000, help="cases to try (default 2000)")
    fz.add_argument("--seed", type=int, default=None, help="Hypothesis seed, for a reproducible run")
    fz.add_argument("--proposer", default="reference", help="whose observation a written vector expects")
    fz.add_argument("--out", default="fuzz-findings", help="directory for written vectors")
    fz.set_defaults(func=cmd_fuzz)
    run = sub.add_parser(
        "run",
        help="run the suite installed with the package (no checkout needed); "
        "arguments after 'run' go to pytest, e.g. run -n auto --backend acme",
        add_help=False,
    )
    run.set_defaults(func=cmd_run)
    sch = sub.add_parser("schema", help="the vector format as JSON Schema (for editors such as Taplo)")
    sch.add_argument(
        "which",
        nargs="?",
        default="vector-file",
        choices=["vector-file", "flag-registry"],
        help="which schema to print (default vector-file)",
    )
    sch.add_argument("--write", action="store_true", help="regenerate the files shipped in conformance/schemas/")
    sch.add_argument("--check", action="store_true", help="fail if the shipped files are stale")
    sch.set_defaults(func=cmd_schema)
    register_report(sub)
    guest_cli.register(sub)
    vendor_cli.register(sub)
    sub.choices["coverage"].add_argument("--limit", type=int, default=20, help="problems shown per list")
    sub.choices["coverage"].add_argument(
        "--list-unreachable",
        action="store_true",
        help="print every unreachable combination with the rule that removes it",
    )
    sub.choices["coverage"].add_argument(
        "--live",
        action="append",
        default=[],
        metavar="RESULTS.json",
        help="instead: which mainline event-layer rules (DEFAULT, SW_PROTECTED) "
        "these live runs' --conformance-json files checked (repeatable)",
    )
    sub.choices["coverage"].add_argument("--live-backend", default="kernel", help="the live backend (default kernel)")
    sub.choices["coverage"].add_argument("--verbose", action="store_true", help="with --live: list every rule")
    args, rest = parser.parse_known_args(argv)
    if args.command == "run":
        args.pytest_args = rest
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
