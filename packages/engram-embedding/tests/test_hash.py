"""The ``hash`` embedder: deterministic, normalised, cheap."""

from __future__ import annotations

import numpy as np
import pytest
from engram.core._protocols import Embedder
from engram.embedding.hash import HashEmbedder


async def test_deterministic_across_instances_and_batches():
    texts = ["The quick brown fox", "jumps over the lazy dog", "the QUICK brown fox"]
    a = await HashEmbedder().embed(texts)
    b = await HashEmbedder().embed(texts[::-1])
    np.testing.assert_array_equal(a, b[::-1])
    np.testing.assert_array_equal(a[0], a[2])  # lower-cased
    assert a.shape == (3, 384) and a.dtype == np.float32


async def test_rows_are_unit_length_and_words_overlap():
    e = HashEmbedder(dims=64)
    out = await e.embed(["red apple pie", "red apple tart", "quantum chromodynamics"])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-6)
    assert out[0] @ out[1] > out[0] @ out[2]


async def test_no_words_is_the_zero_vector_and_empty_batch():
    e = HashEmbedder(dims=16)
    out = await e.embed(["", "!!! ???"])
    assert not out.any()
    assert (await e.embed([])).shape == (0, 16)


async def test_seed_and_dims_and_url():
    x = (await HashEmbedder(seed=1).embed(["hello world"]))[0]
    y = (await HashEmbedder(seed=2).embed(["hello world"]))[0]
    assert not np.array_equal(x, y)
    e = HashEmbedder.from_url("hash://?dims=32&seed=5")
    assert e.dims == 32 and e.config.seed == 5 and isinstance(e, Embedder)
    with pytest.raises(ValueError):
        HashEmbedder(dims=4)
    await e.aclose()
