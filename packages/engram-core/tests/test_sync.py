"""The sync Memory facade: same API, and a slow call never blocks other threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import anyio
import numpy as np
import pytest
from engram.core import Memory
from engram.core.errors import InvalidScopeError, MemoryNotFoundError
from engram.embedding.hash import HashEmbedder


class SlowEmbedder(HashEmbedder):
    """The hash embedder, but any text containing "slow" takes ``delay`` seconds (awaiting, as a
    network call would). ``entered`` is set when a slow call starts."""

    def __init__(self, delay: float) -> None:
        super().__init__(dims=32)
        self.delay = delay
        self.entered = threading.Event()

    async def embed(self, texts: Sequence[str], *, kind: str = "document") -> np.ndarray:  # type: ignore[override]
        if any("slow" in t for t in texts):
            self.entered.set()
            await anyio.sleep(self.delay)
        return await super().embed(texts, kind=kind)  # type: ignore[arg-type]


def test_sync_api() -> None:
    with Memory({"vector_store": "memory", "embedder": "hash"}) as m:
        (r,) = m.add("I love green tea", user_id="alice")["results"]
        assert m.get(r["id"])["memory"] == "I love green tea"
        assert m.search("green tea", user_id="alice")["results"][0]["id"] == r["id"]
        assert len(m.get_all(user_id="alice")["results"]) == 1 and m.count() == 1
        m.update(r["id"], "I love matcha")
        assert [h["event"] for h in m.history(r["id"])] == ["ADD", "UPDATE"]
        m.delete(r["id"])
        with pytest.raises(MemoryNotFoundError):
            m.delete(r["id"])
        with pytest.raises(InvalidScopeError):
            m.add("x")
        m.add(["a", "b"], user_id="bob")
        assert m.delete_all(user_id="bob")["deleted"] == 2
        m.add("c", user_id="bob")
        m.reset()
        assert m.count() == 0
        assert m.config.embedder == "hash" and m.async_memory is not None
    m.close()  # twice is fine


def test_usable_inside_a_running_event_loop() -> None:
    async def main() -> int:
        with Memory({"vector_store": "memory", "embedder": "hash"}) as m:
            m.add("x", user_id="a")
            return m.count()

    assert anyio.run(main) == 1


def test_slow_call_does_not_block_other_threads() -> None:
    emb = SlowEmbedder(delay=2.0)
    with Memory({"vector_store": "memory", "embedder": emb}) as m:
        m.add("green tea", user_id="alice")
        times: dict[str, float] = {}

        def call(name: str, query: str) -> None:
            start = time.perf_counter()
            m.search(query, user_id="alice")
            times[name] = time.perf_counter() - start
            times[name + "_end"] = time.perf_counter()

        slow = threading.Thread(target=call, args=("slow", "a slow query"))
        slow.start()
        assert emb.entered.wait(5), "the slow call never started"
        fast = threading.Thread(target=call, args=("fast", "green tea"))
        fast.start()
        fast.join(5)
        slow.join(5)
        assert not slow.is_alive() and not fast.is_alive()
        assert times["fast"] < 1.0, f"a fast call waited {times['fast']:.2f}s behind a slow one"
        assert times["fast_end"] < times["slow_end"]
        assert times["slow"] >= 1.9


def test_many_threads_share_one_memory() -> None:
    with Memory({"vector_store": "memory", "embedder": "hash"}) as m:
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for j in range(10):
                    m.add(f"thread {i} note {j}", user_id=f"t{i}")
                    m.search("note", user_id=f"t{i}")
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert m.count() == 80 and all(m.count(user_id=f"t{i}") == 10 for i in range(8))
