"""The loaded-file cache must never serve a stale or wrong result."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conformance import cache, load

REPO = Path(__file__).resolve().parent.parent
SUITE = REPO / "suites" / "call" / "zap-all.toml"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "suites").mkdir()
    shutil.copy(REPO / "suites" / "flags.toml", tmp_path / "suites" / "flags.toml")
    shutil.copy(SUITE, tmp_path / "suites" / "zap-all.toml")
    return tmp_path / "suites" / "zap-all.toml"


def forbid_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: object) -> None:
        raise AssertionError(f"cache miss for {path}")
    monkeypatch.setattr(load, "load_file", refuse)


def test_second_load_is_served_from_the_cache(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = cache.load_cached(project, tmp_path / "c")
    assert first == load.load_file(project)
    forbid_loading(monkeypatch)
    assert cache.load_cached(project, tmp_path / "c") == first


def test_changed_file_is_loaded_afresh(project: Path, tmp_path: Path) -> None:
    cache.load_cached(project, tmp_path / "c")
    project.write_text(project.read_text().replace("Fast zap on TDX", "Fast zap on a TDX VM"))
    again = cache.load_cached(project, tmp_path / "c")
    assert again.vectors[0].description.startswith("Fast zap on a TDX VM")


def test_changed_registry_is_loaded_afresh(project: Path, tmp_path: Path) -> None:
    cache.load_cached(project, tmp_path / "c")
    registry = project.parent / "flags.toml"
    registry.write_text(registry.read_text().replace(
        'description = "Baseline behaviour every implementation must get right"', 'description = "Baseline"'))
    again = cache.load_cached(project, tmp_path / "c")
    assert {f.description for f in again.vectors[0].flags} >= {"Baseline"}


def test_corrupt_entry_falls_back_to_loading(project: Path, tmp_path: Path) -> None:
    cache.load_cached(project, tmp_path / "c")
    for entry in (tmp_path / "c").iterdir():
        entry.write_bytes(b"not a pickle")
    assert cache.load_cached(project, tmp_path / "c") == load.load_file(project)


def test_file_errors_are_never_cached(project: Path, tmp_path: Path) -> None:
    project.write_text(project.read_text().replace("format = 1", "format = 7", 1))
    for _ in range(2):
        with pytest.raises(load.LoadError, match="suite.format"):
            cache.load_cached(project, tmp_path / "c")
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_vector_errors_come_back_from_the_cache(project: Path, tmp_path: Path) -> None:
    """A bad vector is part of the file's load: the cached load returns it again."""
    project.write_text(project.read_text().replace('type = "TDX"', 'type = "TDZ"', 1))
    first = cache.load_cached(project, tmp_path / "c")
    again = cache.load_cached(project, tmp_path / "c")
    assert first == again and len(again.errors) == 1 and again.errors[0].error.key.endswith("vm.type")


def test_no_directory_means_no_cache(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_loading(monkeypatch)
    with pytest.raises(AssertionError, match="cache miss"):
        cache.load_cached(project, None)


def test_collection_reads_heads_and_a_vector_loads_its_file_once(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = cache.Writes()
    fresh = cache.load_lazily(project, tmp_path / "c", writes)
    whole = load.load_file(project)
    assert fresh.heads.heads == tuple(cache.VectorHead.of(v) for v in whole.vectors)
    assert not (tmp_path / "c").exists()  # nothing written before the flush
    writes.flush()
    writes.wait()
    assert sorted(p.suffix for p in (tmp_path / "c").iterdir()) == [".heads", ".pickle"]

    read: list[str] = []
    real_read = cache._read
    monkeypatch.setattr(cache, "_read", lambda entry: read.append(entry.suffix) or real_read(entry))
    forbid_loading(monkeypatch)
    warm = cache.load_lazily(project, tmp_path / "c")
    assert warm.heads == fresh.heads and read == [".heads"]  # collecting reads no vector
    ids = [h.id for h in warm.heads.heads]
    assert [warm.vector(i) for i in ids] == list(whole.vectors) and read == [".heads", ".pickle"]


def test_a_vector_whose_file_changed_after_collection_is_an_error(project: Path, tmp_path: Path) -> None:
    cache.load_lazily(project, tmp_path / "c")
    heads = cache.load_lazily(project, tmp_path / "c")
    first = heads.heads.heads[0]
    for entry in (tmp_path / "c").glob("*.pickle"):
        entry.unlink()  # the vectors' entry is gone: the file is read again, and no longer holds the vector
    project.write_text(project.read_text().replace(f'id = "{first.id.split("::")[-1]}"', 'id = "renamed"', 1))
    with pytest.raises(load.LoadError, match="no longer in the file: it changed after collection"):
        heads.vector(first.id)


def test_writes_without_a_fork_are_written_at_once(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(cache.os, "fork")
    writes = cache.Writes()
    cache.load_lazily(project, tmp_path / "c", writes)
    writes.flush()
    assert writes.child is None and len(list((tmp_path / "c").iterdir())) == 2
