"""Export the suites' vectors for `cargo test` (tests/vectors.rs) as JSON.

The Python loader is the one authority on the TOML format (decision
tables are expanded by conformance/tables.py), so the Rust test does not
parse TOML itself: it runs this script on `suites/` and checks the crate
against every (vector, profile) it prints, in the same compact encoding the
backend adapter uses. Usage: python export_vectors.py SUITES_DIR > out.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

from conformance.load import LoadError, load_file
from conformance.model import Observables, Vector

from conformance_rust.encode import (
    DECISIONS, PROFILES, WARN_BITS, host_huge_args, mapping_tuple, op_tuple, state_args,
)


def suite_files(paths: list[str]) -> list[Path]:
    """Vector files as `python -m conformance validate` finds them; the CLI
    module itself is not imported, as it needs pluggy (only the standard
    library is needed here on Python 3.11+)."""
    files: list[Path] = []
    for path in map(Path, paths):
        found = sorted(path.rglob("*.toml")) if path.is_dir() else [path]
        files += [f for f in found if f.name != "flags.toml"]
    return files


def expectation(expect: Observables) -> dict[str, Any]:
    """Only what the vector asserts."""
    out: dict[str, Any] = {}
    if expect.mappings is not None:
        out["mappings"] = sorted(mapping_tuple(m) for m in expect.mappings)
    if expect.flush is not None:
        out["flush"] = expect.flush
    if expect.decision is not None:
        out["decision"] = DECISIONS.index(expect.decision)
    if expect.warns is not None:
        out["warns"] = sum(WARN_BITS[w] for w in expect.warns)
    if expect.errno is not None:
        out["errno"] = expect.errno
    return out


def items(vector: Vector) -> list[dict[str, Any]]:
    vm, slots, private, mappings = state_args(vector.state)
    steps = [{"op": list(op_tuple(s.op)), "expect": expectation(s.expect), "line": s.line}
             for s in vector.steps]
    return [{"id": f"{vector.id}[{profile.value}]", "where": f"{vector.path}:{vector.line}",
             "profile": PROFILES[profile], "vm": list(vm), "slots": slots, "private": private,
             "mappings": mappings, "host_huge": host_huge_args(vector.state), "steps": steps}
            for profile in sorted(vector.profiles, key=lambda p: p.value)]


def main(argv: Optional[list[str]] = None) -> int:
    paths = (argv if argv is not None else sys.argv[1:]) or ["suites"]
    exported: list[dict[str, Any]] = []
    bad = 0
    for path in suite_files(paths):
        try:
            vectors = load_file(path).vectors
        except LoadError as err:
            print(err, file=sys.stderr)
            bad += 1
            continue
        for vector in vectors:
            exported += items(vector)
    json.dump(exported, sys.stdout)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
