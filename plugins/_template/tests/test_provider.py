"""What the conformance suite does not cover: finding the store through its entry point, its
config and URL errors, laziness, cosine on vectors that are not unit length, and file errors.

The registry checks need this distribution installed (``uv sync`` or ``pip install -e .``): the
entry point lives in the installed metadata, not in the source tree."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from engram.core import MemoryItem, Registry, Scope, VectorQuery, WriteBatch, content_hash
from engram.core.errors import ConfigurationError, InvalidInputError, ProviderError
from engram_vector_example import ExampleVectorStore


def memory(text: str, embedding: list[float]) -> MemoryItem:
    return MemoryItem(
        id=text,
        memory=text,
        hash=content_hash(text),
        user_id="u1",
        embedding=np.asarray(embedding, dtype=np.float32),
    )


def test_registry_finds_it_by_name() -> None:
    registry = Registry()
    assert "example" in registry.names("vector_store")
    assert registry.load("vector_store", "example") is ExampleVectorStore
    store = registry.create("vector_store", "example")
    assert isinstance(store, ExampleVectorStore) and store.path is None
    assert "persistent" not in store.capabilities  # in memory only: nothing survives


def test_registry_builds_it_from_a_url_and_a_mapping(tmp_path: Path) -> None:
    registry = Registry()
    by_url = registry.create("vector_store", f"example:///{tmp_path}/m.npz")
    assert by_url.path == tmp_path / "m.npz" and "persistent" in by_url.capabilities
    by_map = registry.create(
        "vector_store", {"provider": "example", "config": {"path": str(tmp_path / "n.npz")}}
    )
    assert by_map.path == tmp_path / "n.npz"
    assert registry.create("vector_store", "example://").path is None


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"provider": "example", "config": {"paht": "x.npz"}}, "paht"),  # extra="forbid" catches typos
        ({"provider": "example", "config": {"path": ""}}, "path"),
        ("example://somehost/x.npz", "path only"),
        ("example:///x.npz?dims=3", "path only"),
    ],
)
def test_config_errors(spec: object, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        Registry().create("vector_store", spec)


async def test_nothing_touches_the_disk_before_the_first_write(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "m.npz"
    store = ExampleVectorStore(path=str(path))
    assert not path.parent.exists()
    assert await store.count() == 0 and not path.parent.exists()
    await store.write(WriteBatch(upserts=[memory("a", [1, 0])]))
    assert path.is_file()
    await store.aclose()
    assert [i.id for i in await store.get(["a"])] == ["a"]  # read back from the file


async def test_scores_are_cosine_for_any_length() -> None:
    store = ExampleVectorStore()
    await store.write(WriteBatch(upserts=[memory("a", [3, 4]), memory("b", [0, -2]), memory("zero", [0, 0])]))
    hits = await store.search(VectorQuery(Scope(user_id="u1"), np.array([6, 8], np.float32), limit=3))
    assert [(h.item.id, round(h.score, 6)) for h in hits] == [("a", 1.0), ("zero", 0.0), ("b", -0.8)]


@pytest.mark.parametrize(
    ("batch", "says"),
    [
        (WriteBatch(upserts=[memory("b", [0, 1])], archive=[("a", "superseded")]), "archive"),
        (WriteBatch(upserts=[memory("b", [0, 1]), memory("c", [1, 2, 3])]), "dims"),
        (WriteBatch(upserts=[memory("b", [0, float("nan")])], deletes=["a"]), "NaN"),
        (WriteBatch(upserts=[replace(memory("b", [0, 1]), metadata={"when": datetime.now(UTC)})]), "JSON"),
        (WriteBatch(upserts=[replace(memory("b", [0, 1]), metadata={"x": float("inf")})]), "JSON"),
    ],
    ids=["archive", "dims", "nan", "datetime", "inf"],
)
async def test_bad_batches_change_nothing(batch: WriteBatch, says: str, tmp_path: Path) -> None:
    store = ExampleVectorStore(path=str(tmp_path / "m.npz"))
    await store.write(WriteBatch(upserts=[memory("a", [1, 0])]))
    saved = (tmp_path / "m.npz").read_bytes()
    with pytest.raises(InvalidInputError, match=says):
        await store.write(batch)
    assert [i.id for i in await store.list(None)] == ["a"]
    assert (tmp_path / "m.npz").read_bytes() == saved


async def test_file_errors_become_provider_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz file")
    with pytest.raises(ProviderError, match="cannot read") as info:
        await ExampleVectorStore(path=str(bad)).count()
    assert info.value.__cause__ is not None  # the original error is kept
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = ExampleVectorStore(path=str(blocker / "m.npz"))  # a file where a folder should be
    with pytest.raises(ProviderError, match="cannot write"):
        await store.write(WriteBatch(upserts=[memory("a", [1, 0])]))
    assert await store.count() == 0  # the failed write left the live state unchanged
