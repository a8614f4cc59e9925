"""conformance.dump writes what the loader reads back, for every shipped vector."""
from __future__ import annotations

from pathlib import Path

from conformance.dump import suite_toml
from conformance.load import load_file, suite_files

ROOT = Path(__file__).resolve().parent.parent


def test_every_shipped_vector_round_trips(tmp_path):
    (tmp_path / "flags.toml").write_text((ROOT / "suites" / "flags.toml").read_text())
    for path in suite_files([ROOT / "suites"]):
        originals = load_file(path).vectors
        local = [v.id.split("::", 1)[1].replace("/", ".").replace("+", "_").lower() for v in originals]
        out = tmp_path / path.name
        out.write_text(suite_toml("round trip", [(v, i, ("from " + path.name,)) for v, i in zip(originals, local)]))
        again = load_file(out).strict().vectors
        assert len(again) == len(originals)
        for old, new in zip(originals, again):
            assert (new.state, tuple(s.op for s in new.steps), new.profiles, new.flags) == \
                   (old.state, tuple(s.op for s in old.steps), old.profiles, old.flags), old.id
            assert tuple(s.expect for s in new.steps) == tuple(s.expect for s in old.steps), old.id
            assert new.requires == old.requires, old.id
