"""Decay: an Ebbinghaus-style retention factor on search scores (off by default).

SKELETON: the decay helper replaces this module (formula, rehearsal, docstrings).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from ._types import ScoredMemory

__all__ = ["DecayConfig", "apply_decay", "rehearse"]


class DecayConfig(BaseModel):
    """``search.decay``: off by default."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False


def apply_decay(hits: Sequence[ScoredMemory], config: DecayConfig, now: datetime) -> list[ScoredMemory]:
    """Multiply each hit's score by its retention at ``now`` and re-sort (identity when off)."""
    return list(hits)


async def rehearse(store: object, hits: Sequence[ScoredMemory], config: DecayConfig, now: datetime) -> None:
    """Record an access (count + 1, last access = ``now``) for each returned hit (no-op when off)."""
    return None
