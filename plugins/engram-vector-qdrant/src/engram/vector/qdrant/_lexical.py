"""BM25 as sparse vectors: the store turns text into term weights, Qdrant supplies the IDF.

A document's sparse vector holds, for each distinct term ``t`` of its text, the BM25 term weight
(Robertson and Zaragoza, "The Probabilistic Relevance Framework: BM25 and Beyond", 2009)::

    w(t, d) = tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(d) / avg_len))

where ``tf`` is how often ``t`` occurs in ``d`` and ``len(d)`` its number of terms. A query's
sparse vector holds 1.0 for each of its distinct terms. The collection's sparse vector is created
with Qdrant's IDF modifier, so Qdrant multiplies each query weight by
``ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))`` (N documents, n(t) of them holding ``t``) at search
time, and the score of a document is the BM25 sum ``sum over query terms of idf(t) * w(t, d)``.

``avg_len`` is a fixed setting, not the collection's running average: weights are computed when a
document is written and are not revisited as the collection grows.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections import Counter
from functools import lru_cache
from typing import Any

import snowballstemmer

__all__ = ["MAX_QUERY_TERMS", "STOP_WORDS", "document_vector", "query_vector", "term_id", "terms"]

MAX_QUERY_TERMS = 64
# Letters and digits; everything else separates words (as SQLite FTS5's unicode61 tokenizer).
_WORD = re.compile(r"[^\W_]+")

# English function words left out of queries (never out of documents), unless a query holds
# nothing else: "what did I say about Paris" searches for "say" and "paris".
STOP_WORDS = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves s t d ll m re ve
    """.split()
)


_local = threading.local()


def _stemmer() -> Any:
    """This thread's English stemmer (a Snowball stemmer keeps state while it works)."""
    st = getattr(_local, "stemmer", None)
    if st is None:
        st = _local.stemmer = snowballstemmer.stemmer("english")
    return st


def _fold(text: str) -> str:
    """Case-folded, with diacritics removed (NFKD, combining marks dropped)."""
    folded = text.casefold()
    if folded.isascii():
        return folded
    decomposed = unicodedata.normalize("NFKD", folded)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    # English suffixes end in a letter: a word ending otherwise (a number, "b12") stays as it is
    return _stemmer().stemWord(word) if word[-1].isalpha() else word


def terms(text: str) -> list[str]:
    """The terms of a text, in order: words (runs of letters and digits), case-folded, without
    diacritics, stemmed with the English Snowball (Porter 2) stemmer. ``"Running shoes"`` ->
    ``["run", "shoe"]``."""
    return [_stem(w) for w in _WORD.findall(_fold(text))]


def term_id(term: str) -> int:
    """The sparse-vector index of a term: the first 32 bits of its BLAKE2b hash (so no vocabulary
    is kept; two terms share an index with probability about 2**-32 per pair)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


def document_vector(
    texts: list[str], *, k1: float, b: float, avg_len: float
) -> tuple[list[int], list[float]]:
    """``(indices, values)`` of a document made of ``texts`` (the memory and the speaker's name):
    one BM25 term weight per distinct term (see the module docstring). Empty when no term."""
    found: list[str] = []
    for t in texts:
        found += terms(t)
    if not found:
        return [], []
    norm = k1 * (1.0 - b + b * len(found) / avg_len)
    weights: dict[int, float] = {}
    for term, tf in Counter(found).items():
        idx = term_id(term)
        weights[idx] = weights.get(idx, 0.0) + tf * (k1 + 1.0) / (tf + norm)
    return list(weights), list(weights.values())


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """``(indices, values)`` of a query: 1.0 per distinct term, stop words dropped unless nothing
    else is left, at most :data:`MAX_QUERY_TERMS` terms. Empty when the text has no word."""
    words = list(dict.fromkeys(_WORD.findall(_fold(text))))
    if not words:
        return [], []
    kept = [w for w in words if w not in STOP_WORDS] or words
    stems = list(dict.fromkeys(_stem(w) for w in kept))[:MAX_QUERY_TERMS]
    ids = list(dict.fromkeys(term_id(s) for s in stems))
    return ids, [1.0] * len(ids)
