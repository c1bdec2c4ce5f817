"""SQLiteHistoryStore against the history store conformance suite, on a file and on ``:memory:``."""

from __future__ import annotations

import pytest
from engram.core import HistoryStore
from engram.core.errors import ConfigurationError
from engram.history.sqlite import SQLiteHistoryStore, path_from_url
from engram.testing import HistoryStoreConformance


class TestSQLiteHistoryFile(HistoryStoreConformance):
    @pytest.fixture
    async def history_store(self, tmp_path):
        h = SQLiteHistoryStore(SQLiteHistoryStore.Config(path=str(tmp_path / "history.db")))
        yield h
        await h.aclose()

    async def reopen(self, provider):
        await provider.aclose()
        return SQLiteHistoryStore(SQLiteHistoryStore.Config(path=provider.config.path))


class TestSQLiteHistoryInMemory(HistoryStoreConformance):
    capabilities = frozenset()  # ":memory:" keeps nothing once closed, whatever the class declares

    @pytest.fixture
    async def history_store(self):
        h = SQLiteHistoryStore.from_url("sqlite:///:memory:")
        yield h
        await h.aclose()


def test_is_a_history_store(tmp_path) -> None:
    assert isinstance(SQLiteHistoryStore(path=str(tmp_path / "h.db")), HistoryStore)


@pytest.mark.parametrize(
    ("url", "path"),
    [("sqlite:///:memory:", ":memory:"), ("sqlite:///rel/h.db", "rel/h.db"), ("sqlite:////abs/h.db", "/abs/h.db")],
)
def test_path_from_url(url: str, path: str) -> None:
    assert path_from_url(url) == path


@pytest.mark.parametrize("url", ["postgres:///x", "sqlite://host/x.db", "sqlite://"])
def test_path_from_url_rejects(url: str) -> None:
    with pytest.raises(ConfigurationError):
        path_from_url(url)


async def test_closed_store_raises_provider_error(tmp_path) -> None:
    from engram.core.errors import ProviderError

    h = SQLiteHistoryStore(path=str(tmp_path / "h.db"))
    await h.history("x")
    await h.aclose()
    with pytest.raises(ProviderError):
        await h.history("x")
