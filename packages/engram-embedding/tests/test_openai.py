"""The ``openai`` embedder against a real HTTP server on 127.0.0.1 (see ``conftest.py``)."""

from __future__ import annotations

import socket
import time

import anyio
import numpy as np
import pytest
from engram.core import errors
from engram.core._protocols import Embedder
from engram.embedding.openai import OpenAIEmbedder


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _make(server, **kw) -> OpenAIEmbedder:
    kw.setdefault("base_url", server.base_url)
    kw.setdefault("model", "test-embed")
    kw.setdefault("backoff_initial", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return OpenAIEmbedder(**kw)


async def test_success_order_normalisation_and_usage(embeddings_server):
    texts = ["alpha", "beta gamma", "delta", "épsilon 🚀"]
    async with _make(embeddings_server) as e:
        assert isinstance(e, Embedder)
        assert e.dims == 0  # unknown model, no dims: learned from the first response
        out = await e.embed(texts)
        assert out.shape == (4, 16) and out.dtype == np.float32
        assert e.dims == 16
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
        for row, t in zip(out, texts, strict=True):  # the server answers in reverse order
            np.testing.assert_allclose(row, _unit(embeddings_server.vector(t, 16)), atol=1e-6)
        assert e.last_usage == {"prompt_tokens": 6, "total_tokens": 6}
    (req,) = embeddings_server.requests
    assert req.path == "/v1/embeddings"
    assert req.body == {"model": "test-embed", "input": texts, "encoding_format": "float"}
    assert "authorization" not in req.headers


async def test_auth_header_dimensions_and_base64(embeddings_server):
    embeddings_server.require_key = "sk-test-123"
    e = _make(embeddings_server, api_key="sk-test-123", dimensions=32, encoding_format="base64",
              organization="org-1", headers={"X-Extra": "yes"})
    assert e.dims == 32
    assert "sk-test-123" not in repr(e.config)  # SecretStr
    out = await e.embed(["one", "two"])
    assert out.shape == (2, 32)
    np.testing.assert_allclose(out[1], _unit(embeddings_server.vector("two", 32)), atol=1e-6)
    req = embeddings_server.requests[-1]
    assert req.headers["authorization"] == "Bearer sk-test-123"
    assert req.headers["openai-organization"] == "org-1"
    assert req.headers["x-extra"] == "yes"
    assert req.body["dimensions"] == 32 and req.body["encoding_format"] == "base64"
    await e.aclose()


async def test_wrong_key_is_a_provider_error_with_the_servers_message(embeddings_server):
    embeddings_server.require_key = "sk-right"
    e = _make(embeddings_server, api_key="sk-wrong")
    with pytest.raises(errors.ProviderError, match=r"HTTP 401: Incorrect API key provided.*invalid_api_key"):
        await e.embed(["x"])
    assert len(embeddings_server.requests) == 1  # a 401 is not retried
    await e.aclose()


async def test_batching_keeps_order(embeddings_server):
    texts = [f"text number {i}" for i in range(23)]
    e = _make(embeddings_server, batch_size=5, max_concurrency=3)
    out = await e.embed(texts)
    sizes = sorted(len(r.body["input"]) for r in embeddings_server.requests)
    assert sizes == [3, 5, 5, 5, 5]
    expected = np.stack([_unit(embeddings_server.vector(t, 16)) for t in texts])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    await e.aclose()


async def test_retries_on_500_then_succeeds(embeddings_server):
    embeddings_server.script = [
        ("status", 500, {"error": {"message": "boom"}}, {}),
        ("status", 503, {"error": "overloaded"}, {}),
    ]
    e = _make(embeddings_server)
    out = await e.embed(["a"])
    assert out.shape == (1, 16)
    assert len(embeddings_server.requests) == 3
    await e.aclose()


async def test_429_honours_retry_after(embeddings_server):
    embeddings_server.script = [("status", 429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "0.6"})]
    e = _make(embeddings_server)
    t0 = time.monotonic()
    await e.embed(["a"])
    assert time.monotonic() - t0 >= 0.55  # waited what the server asked, not the 0.01 s backoff
    assert len(embeddings_server.requests) == 2
    await e.aclose()


async def test_retry_after_ms_header(embeddings_server):
    embeddings_server.script = [("status", 429, {"error": "slow down"}, {"retry-after-ms": "300", "Retry-After": "30"})]
    e = _make(embeddings_server)
    t0 = time.monotonic()
    await e.embed(["a"])
    assert 0.25 <= time.monotonic() - t0 < 5
    await e.aclose()


async def test_retry_after_beyond_the_budget_fails_fast(embeddings_server):
    embeddings_server.script = [("status", 429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "60"})]
    e = _make(embeddings_server, total_timeout=2.0)
    t0 = time.monotonic()
    with pytest.raises(errors.ProviderError, match="Rate limit reached") as info:
        await e.embed(["a"])
    assert not isinstance(info.value, errors.ProviderTimeoutError)
    assert time.monotonic() - t0 < 1.0
    await e.aclose()


async def test_retries_exhausted_keeps_the_servers_message(embeddings_server):
    embeddings_server.script = [("status", 500, {"error": {"message": "internal kaboom"}}, {})] * 3
    e = _make(embeddings_server, max_retries=2)
    with pytest.raises(errors.ProviderError, match=r"after 3 attempts: HTTP 500: internal kaboom"):
        await e.embed(["a"])
    assert len(embeddings_server.requests) == 3
    await e.aclose()


async def test_hang_times_out_then_retry_succeeds(embeddings_server):
    embeddings_server.script = [("hang", 5.0)]
    e = _make(embeddings_server, timeout=0.5)
    t0 = time.monotonic()
    out = await e.embed(["a"])
    assert out.shape == (1, 16)
    assert 0.4 < time.monotonic() - t0 < 3.0
    await e.aclose()


async def test_total_timeout_is_bounded(embeddings_server):
    embeddings_server.script = [("hang", 10.0)] * 10
    e = _make(embeddings_server, timeout=0.4, total_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(errors.ProviderTimeoutError) as info:
        await e.embed(["a"])
    assert isinstance(info.value, TimeoutError)
    assert time.monotonic() - t0 < 2.0
    await e.aclose()


async def test_connection_refused_is_retried_then_translated():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    e = OpenAIEmbedder(base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=2, backoff_initial=0.01)
    with pytest.raises(errors.ProviderError, match="connection failed") as info:
        await e.embed(["a"])
    assert info.value.__cause__ is not None
    await e.aclose()


async def test_bad_responses(embeddings_server):
    e = _make(embeddings_server)
    embeddings_server.script = [("count", 1)]
    with pytest.raises(errors.ProviderError, match="1 embeddings for 2 inputs"):
        await e.embed(["a", "b"])
    embeddings_server.script = [("raw", 200, "<html>proxy</html>")]
    with pytest.raises(errors.ProviderError, match="not JSON"):
        await e.embed(["a"])
    embeddings_server.script = [("status", 400, {"error": {"message": "model not found", "code": "model_not_found"}}, {})]
    with pytest.raises(errors.ProviderError, match="model not found"):
        await e.embed(["a"])
    embeddings_server.script = [("raw", 404, "not here")]
    with pytest.raises(errors.ProviderError, match="HTTP 404: not here"):
        await e.embed(["a"])
    await e.aclose()


async def test_dimension_mismatch_is_reported(embeddings_server):
    e = _make(embeddings_server, dims=8)  # the server answers 16
    with pytest.raises(errors.ProviderError, match="length 16, expected 8"):
        await e.embed(["a"])
    await e.aclose()


async def test_empty_inputs(embeddings_server):
    e = _make(embeddings_server, dims=16)
    assert (await e.embed([])).shape == (0, 16)
    assert not embeddings_server.requests
    out = await e.embed(["", "x"])  # an empty string is sent as a space; the server rejects ""
    assert out.shape == (2, 16)
    assert embeddings_server.requests[-1].body["input"] == [" ", "x"]
    with pytest.raises(errors.InvalidInputError):
        await e.embed("not a list")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInputError):
        await e.embed(["ok", 3])  # type: ignore[list-item]
    await e.aclose()


async def test_kind_is_accepted_and_symmetric(embeddings_server):
    e = _make(embeddings_server)
    q = await e.embed(["same"], kind="query")
    d = await e.embed(["same"], kind="document")
    np.testing.assert_array_equal(q, d)
    await e.aclose()


async def test_concurrent_calls_share_one_client(embeddings_server):
    e = _make(embeddings_server)
    results: dict[int, np.ndarray] = {}

    async def one(i: int) -> None:
        results[i] = await e.embed([f"t{i}"])

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
    for i in range(8):
        np.testing.assert_allclose(results[i][0], _unit(embeddings_server.vector(f"t{i}", 16)), atol=1e-6)
    await e.aclose()
    await e.aclose()  # idempotent


def test_config_and_url():
    e = OpenAIEmbedder.from_url("openai://:sk-abc@localhost:8080/v1?model=nomic-embed&tls=false&dims=768")
    assert e.config.base_url == "http://localhost:8080/v1"
    assert e.config.api_key is not None and e.config.api_key.get_secret_value() == "sk-abc"
    assert e.config.model == "nomic-embed" and e.dims == 768
    assert OpenAIEmbedder.from_url("openai://").config.base_url == "https://api.openai.com/v1"
    assert OpenAIEmbedder().dims == 1536
    assert OpenAIEmbedder(model="text-embedding-3-large").dims == 3072
    assert OpenAIEmbedder(model="text-embedding-3-large", dimensions=256).dims == 256
    with pytest.raises(errors.ConfigurationError):
        OpenAIEmbedder.from_url("openai://host/v1?nonsense=1")
    with pytest.raises(ValueError):
        OpenAIEmbedder(dims=8, dimensions=16)
    with pytest.raises(ValueError):
        OpenAIEmbedder(base_url="ftp://x")
    with pytest.raises(ValueError):
        OpenAIEmbedder(api_keyy="x")  # extra="forbid"


def test_registry_builds_it():
    from engram.core import Registry

    e = Registry().create("embedder", {"provider": "openai", "config": {"model": "m", "dims": 4}})
    assert isinstance(e, OpenAIEmbedder) and e.dims == 4
