"""The synchronous facade: :class:`Memory`."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from ._config import MemoryConfig
from ._memory import AsyncMemory
from ._registry import Registry

__all__ = ["Memory"]

T = TypeVar("T")


class _LoopThread:
    """An event loop on a daemon thread; callers block only themselves while their call runs there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="engram-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and wait for it. The call runs in a copy of the caller's
        context (``call_soon_threadsafe`` copies it and the task copies that), so a span the caller
        opened, or any other context variable, is seen by the call: ``engram.add`` is a child of the
        application's span around ``memory.add(...)``."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("a sync Memory method was called from its own event loop; use AsyncMemory there")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
        if not self.loop.is_running():
            self.loop.close()


class Memory:
    """Blocking twin of :class:`AsyncMemory`, for code without an event loop.

    Each instance runs one private event loop on a daemon thread; a call blocks only the calling
    thread, so several threads can use one ``Memory`` at once and their calls run concurrently.
    Same methods, arguments, results and errors as :class:`AsyncMemory`. Close it with
    ``close()`` or a ``with`` block.
    """

    def __init__(
        self,
        config: MemoryConfig | Mapping[str, Any] | None = None,
        *,
        registry: Registry | None = None,
        tracer_provider: Any = None,
        meter_provider: Any = None,
    ):
        self._async = AsyncMemory(
            config, registry=registry, tracer_provider=tracer_provider, meter_provider=meter_provider
        )
        self._loop = _LoopThread()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Memory:
        return cls(config)

    @property
    def config(self) -> MemoryConfig:
        return self._async.config

    @property
    def async_memory(self) -> AsyncMemory:
        """The :class:`AsyncMemory` this facade drives."""
        return self._async

    def add(self, messages: Any, **kwargs: Any) -> dict[str, Any]:
        return self._loop.call(self._async.add(messages, **kwargs))

    def search(self, query: str, **kwargs: Any) -> dict[str, Any]:
        return self._loop.call(self._async.search(query, **kwargs))

    def get(self, memory_id: str) -> dict[str, Any] | None:
        return self._loop.call(self._async.get(memory_id))

    def get_all(self, **kwargs: Any) -> dict[str, Any]:
        return self._loop.call(self._async.get_all(**kwargs))

    def count(self, **kwargs: Any) -> int:
        return self._loop.call(self._async.count(**kwargs))

    def update(self, memory_id: str, data: str, **kwargs: Any) -> dict[str, Any]:
        return self._loop.call(self._async.update(memory_id, data, **kwargs))

    def delete(self, memory_id: str) -> dict[str, Any]:
        return self._loop.call(self._async.delete(memory_id))

    def delete_all(self, **kwargs: Any) -> dict[str, Any]:
        return self._loop.call(self._async.delete_all(**kwargs))

    def get_graph(self, **kwargs: Any) -> dict[str, Any]:
        return self._loop.call(self._async.get_graph(**kwargs))

    def history(self, memory_id: str) -> list[dict[str, Any]]:
        return self._loop.call(self._async.history(memory_id))

    def reset(self) -> None:
        self._loop.call(self._async.reset())

    def close(self) -> None:
        """Release the providers and stop the loop thread. Safe to call twice."""
        if self._loop.loop.is_closed():
            return
        try:
            self._loop.call(self._async.aclose())
        finally:
            self._loop.stop()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
