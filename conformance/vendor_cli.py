"""The vendor kit's commands: `new-backend` (a backend distribution to start
from) and `expectations` (an expectations file from a run's results)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from . import expectations, results, scaffold
from .errors import LoadError
from .registry import Registry


def cmd_new_backend(args: argparse.Namespace) -> int:
    try:
        names = scaffold.Names.of(args.name)
        scaffold.check_free(names)
        directory = Path(args.dir or names.dist)
        written = scaffold.write(names, directory)
    except (scaffold.ScaffoldError, OSError) as err:
        print(f"new-backend: {err}", file=sys.stderr)
        return 2
    print(f"written {len(written)} files to {directory}:")
    print("\n".join(f"  {path}" for path in written))
    print("next:")
    print(f"  pip install -e {directory}")
    print(f"  python -m conformance run --backend {names.name} --conformance-json results.json")
    print(
        f"  python -m conformance expectations --from results.json --backend {names.name} "
        f"-o {directory / names.package / 'expectations.toml'}"
    )
    return 0


def check_expectations(registry: Registry) -> None:
    """A backend's expectations file that cannot be loaded is a plugin error, as in a run."""
    for name, backend in sorted(registry.backends.items()):
        if backend.info.expectations is not None:
            try:
                expectations.load(backend.info.expectations, owner=name)
            except LoadError as err:
                registry.fail(f"backend {name}: expectations file", str(err))


def cmd_expectations(args: argparse.Namespace) -> int:
    try:
        loaded = results.load_results(args.results)  # a results file of any format, the old bare list included
    except results.ResultsError as err:
        print(f"expectations: {err}", file=sys.stderr)
        return 2
    mine = [r for r in loaded.results if r.backend == args.backend]
    if not mine:
        found = ", ".join(sorted({r.backend for r in loaded.results})) or "none"
        print(
            f"expectations: no results of backend {args.backend} in {args.results}; backends there: {found}",
            file=sys.stderr,
        )
        return 2
    entries = expectations.failures(mine, args.backend)
    text = expectations.render(args.backend, entries, Path(args.results).name)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    outcomes = Counter(r.outcome for r in mine)
    faults = sum(outcomes[o] for o in ("error", "crashed", "timeout"))
    print(
        f"{len(entries)} entries for backend {args.backend} from {len(mine)} results "
        f"({', '.join(f'{n} {o}' for o, n in sorted(outcomes.items()))})"
        + (f"; {faults} errors, crashes and timeouts are not expected failures: not written" if faults else "")
        + (f"; written to {args.output}" if args.output else ""),
        file=sys.stderr,
    )
    return 0


def register(sub: Any) -> None:
    """Add the commands to the CLI's subparsers."""
    new = sub.add_parser("new-backend", help="write a backend distribution to start from (installable at once)")
    new.add_argument("name", help="the backend's name (its entry point's)")
    new.add_argument("dir", nargs="?", help="where to write it (default: ./kvm-mmu-conformance-NAME)")
    new.set_defaults(func=cmd_new_backend)
    exp = sub.add_parser("expectations", help="write an expectations file of a backend's failures from a results file")
    exp.add_argument("--from", dest="results", required=True, metavar="RESULTS.json", help="a --conformance-json file")
    exp.add_argument("--backend", required=True, metavar="NAME", help="the backend whose failures to list")
    exp.add_argument("-o", "--output", metavar="FILE", help="write here (default: standard output)")
    exp.set_defaults(func=cmd_expectations)
