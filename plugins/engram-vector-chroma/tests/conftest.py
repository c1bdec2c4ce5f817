"""Shared fixtures: a unique collection name per test, and the Chroma server's address when one runs."""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit

import pytest

NEEDS_SERVER = (
    "needs a Chroma server: run `python scripts/chroma_server.py start --state DIR` and set "
    "ENGRAM_TEST_CHROMA_URL (nox -s integration does both)"
)


@pytest.fixture
def collection() -> str:
    """A collection name no other test uses (chromadb keeps one in-memory database per process,
    and one per folder, shared by all their clients)."""
    return f"engram-test-{uuid.uuid4().hex}"


@pytest.fixture
def server() -> tuple[str, int]:
    """``(host, port)`` of the Chroma server named by ENGRAM_TEST_CHROMA_URL; skips the test,
    saying how to start one, when the variable is unset."""
    url = os.environ.get("ENGRAM_TEST_CHROMA_URL")
    if not url:
        pytest.skip(NEEDS_SERVER)
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 8000
