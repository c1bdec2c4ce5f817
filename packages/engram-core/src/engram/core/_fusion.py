"""Rank fusion: combine several ranked hit lists into one.

Used by stores that do hybrid search in one call and by the engine when it fuses its recall paths.
Inputs are short (the candidates of each path), so plain dictionaries are the fast way here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

__all__ = ["fuse", "normalize_dbsf", "normalize_minmax"]

K = TypeVar("K")


def normalize_minmax(scores: Sequence[float]) -> list[float]:
    """Min-max to [0, 1]; a list whose scores are all equal maps to 1.0 each."""
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi - lo <= 1e-12:
        return [1.0] * len(scores)
    return [(s - lo) / (hi - lo) for s in scores]


def normalize_dbsf(scores: Sequence[float]) -> list[float]:
    """Distribution-based normalisation: ``(s - (mean - 3 sd)) / (6 sd)`` clipped to [0, 1] (Qdrant's DBSF)."""
    n = len(scores)
    if n == 0:
        return []
    mean = sum(scores) / n
    sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / n)
    if sd <= 1e-12:
        return [1.0] * n
    lo, span = mean - 3 * sd, 6 * sd
    return [min(1.0, max(0.0, (s - lo) / span)) for s in scores]


def fuse(
    rankings: Mapping[str, Sequence[tuple[K, float]]],
    weights: Mapping[str, float],
    *,
    method: str = "rsf",
    rrf_k: int = 60,
) -> list[tuple[K, float]]:
    """Fuse ranked lists of ``(key, score)`` (best first, higher score better) into one.

    Args:
        rankings: path name -> its hits.
        weights: path name -> weight (>= 0); a path with no weight counts 1.0.
        method: ``"rsf"`` (min-max normalised scores, weighted sum, divided by the total weight of
            the paths present, so results lie in [0, 1]), ``"dbsf"`` (the same with DBSF
            normalisation), or ``"rrf"`` (``sum(w / (rrf_k + rank))``, rank from 1).

    Returns:
        ``(key, fused score)`` best first; ties keep the order of first appearance.

    Raises:
        ValueError: unknown method.
    """
    fused: dict[K, float] = {}
    if method == "rrf":
        for path, hits in rankings.items():
            w = weights.get(path, 1.0)
            for rank, (key, _) in enumerate(hits, 1):
                fused[key] = fused.get(key, 0.0) + w / (rrf_k + rank)
    elif method in ("rsf", "dbsf"):
        norm = normalize_minmax if method == "rsf" else normalize_dbsf
        total = sum(weights.get(p, 1.0) for p, hits in rankings.items() if hits) or 1.0
        for path, hits in rankings.items():
            w = weights.get(path, 1.0) / total
            for (key, _), s in zip(hits, norm([h[1] for h in hits]), strict=True):
                fused[key] = fused.get(key, 0.0) + w * s
    else:
        raise ValueError(f"unknown fusion method {method!r}; expected rsf, dbsf or rrf")
    return sorted(fused.items(), key=lambda kv: -kv[1])
