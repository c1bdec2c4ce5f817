from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Sequence
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import numpy as np
from engram.core.errors import InvalidInputError
from pydantic import BaseModel, ConfigDict, Field

_TOKEN = re.compile(r"\w+", re.UNICODE)


class HashEmbedder:
    """Feature hashing ("the hashing trick", Weinberger et al., ICML 2009) of lower-cased word
    unigrams (weight 1) and bigrams (weight 0.5) into ``dims`` signed buckets, L2-normalised.

    Texts that share words get a positive cosine, so it ranks sensibly enough for tests, while
    costing microseconds and no model. It is not a semantic model: use ``local`` for real recall.
    A text without any word embeds to the zero vector.

    URL form: ``hash://?dims=384``.
    """

    class Config(BaseModel):
        """Attributes: dims: vector length (8-8192). seed: changes every bucket."""

        model_config = ConfigDict(extra="forbid")
        dims: int = Field(384, ge=8, le=8192)
        seed: int = 0

    capabilities = frozenset()

    def __init__(self, config: Config | None = None, **kwargs: object) -> None:
        self.config = config or self.Config(**kwargs)  # type: ignore[arg-type]
        self._dims = self.config.dims
        self._seed = self.config.seed

    @classmethod
    def from_url(cls, url: str) -> HashEmbedder:
        q = parse_qs(urlsplit(url).query)
        return cls(cls.Config.model_validate({k: v[-1] for k, v in q.items()}))

    @property
    def dims(self) -> int:
        return self._dims

    def _one(self, text: str, out: np.ndarray) -> None:
        words = _TOKEN.findall(text.lower())
        dims, seed = self._dims, self._seed
        for weight, feats in ((1.0, words), (0.5, [a + " " + b for a, b in itertools.pairwise(words)])):
            for f in feats:
                h = zlib.crc32(f.encode("utf-8"), seed)
                out[h % dims] += weight if (h >> 31) & 1 else -weight
        n = float(np.linalg.norm(out))
        if n > 0:
            out /= n

    async def embed(self, texts: Sequence[str], *, kind: Literal["document", "query"] = "document") -> np.ndarray:
        """Returns ``(len(texts), dims)`` float32, rows L2-normalised (zero for a text without words).

        Raises:
            InvalidInputError: ``texts`` is a single string, or an item is not a string.
        """
        if isinstance(texts, str):
            raise InvalidInputError("embed() takes a sequence of strings, not a single string")
        for t in texts:
            if not isinstance(t, str):
                raise InvalidInputError(f"embed() takes strings; got {type(t).__name__}")
        out = np.zeros((len(texts), self._dims), dtype=np.float32)
        for i, t in enumerate(texts):
            self._one(t, out[i])
        return out

    async def aclose(self) -> None:
        return None
