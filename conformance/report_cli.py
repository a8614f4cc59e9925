"""`python -m conformance report`: merge results files, print the matrix, write HTML and JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import html_report, merge
from .results import ResultsError, dump, load_results


def cmd_report(args: argparse.Namespace) -> int:
    documents = []
    for path in args.files:
        try:
            documents.append(load_results(path))
        except ResultsError as err:
            print(f"report: {err}", file=sys.stderr)
            return 2
        if documents[-1].legacy:
            print(f"report: {path}: a legacy results file (a bare list): its items only, no run details")
    merged = merge.merge(documents)
    print(f"{len(merged.results)} items from {len(merged.runs)} run(s) in {len(args.files)} file(s)")
    print("\n".join(merge.matrix_lines(merged)))
    if args.html is not None:
        args.html.write_text(html_report.render(merged), encoding="utf-8")
        print(f"written: {args.html}")
    if args.json is not None:
        dump(merged, args.json)
        print(f"written: {args.json}")
    return 0


def register(sub: Any) -> None:
    """Adds the subcommand to `python -m conformance`'s parser."""
    p = sub.add_parser(
        "report",
        help="merge --conformance-json files (several machines, backends, runs) into one matrix, HTML page or file",
    )
    p.add_argument("files", nargs="+", metavar="RESULTS.json", help="results files, this format or the legacy list")
    p.add_argument("--html", type=Path, metavar="PATH", help="write one self-contained HTML page")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the merged results (same format, every run)")
    p.set_defaults(func=cmd_report)
