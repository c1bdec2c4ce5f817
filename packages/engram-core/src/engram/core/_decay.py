"""Decay: an Ebbinghaus-style retention factor on search scores, with rehearsal (off by default).

With ``search.decay.enabled``, search multiplies each hit's score by its retention ``R`` (see
:func:`retention`), so that of two equally relevant memories the one not recalled for longer ranks
lower, then re-sorts. The results search returns (after the threshold and the limit) are
*rehearsed*: the store counts the access and notes its time, which makes the memory decay more
slowly from then on (the spacing effect) and restarts its clock.

Sources: Ebbinghaus measured the forgetting curve (*Über das Gedächtnis*, 1885); its usual
exponential approximation ``R = exp(-t / S)`` with a strength ``S`` that grows with each recall
is the one MemoryBank uses for LLM memory (Zhong et al., "MemoryBank: Enhancing Large Language
Models with Long-Term Memory", AAAI 2024, arXiv:2305.10250). engram generalises it to a stretched
exponential (a ``shape`` exponent on ``t / S``) and adds a floor; ``shape = 0.5`` is the
"exponential in the square root of time", one of the functions Rubin and Wenzel found to fit
retention data best ("One hundred years of forgetting", Psychological Review 103, 1996).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ._types import MemoryItem, ScoredMemory, parse_time
from .errors import EngramError, InvalidInputError

__all__ = ["DecayConfig", "age_days", "apply_decay", "check_access_time", "decayed_score", "rehearse", "retention"]

log = logging.getLogger("engram")

SECONDS_PER_DAY = 86_400.0
#: ``math.exp(z)`` overflows past about 709; ``exp(-exp(z))`` is already 0.0 from ``z`` = 6.7.
_MAX_LOG_TERM = 700.0


class DecayConfig(BaseModel):
    """``search.decay``: the retention factor on scores and rehearsal. Off by default.

    Retention at age ``t`` days (see :func:`retention`)::

        S = base_stability * (1 + rehearsal * access_count)
        R = floor + (1 - floor) * exp(-(t / S) ** shape)

    Attributes:
        enabled: apply decay and record rehearsals. Off by default: ranking by relevance alone is
            what a mem0 user expects, and each search then writes to the store.
        base_stability: ``S`` in days for a memory never rehearsed (> 0). 30: after a week
            without recall a memory keeps R = 0.83 of its score, after a month 0.49, after three
            months 0.24 (with the default floor and shape), so recency separates memories of
            similar relevance without burying last month's facts.
        shape: the exponent on ``t / S`` (> 0, at most 10). 1.0 is the plain exponential; below 1
            the curve drops faster at first and then flattens (a long tail, as human forgetting;
            0.5 is the exponential in the square root of time); above 1 it stays near 1 for a
            while and then drops (10 is almost a step at ``t = S``).
        floor: the retention an old memory tends to, in [0, 1]. 0.2: an old memory is never
            forgotten by decay alone, and an old but exact match (score 1.0 -> 0.2 at worst) still
            outranks a fresh memory that barely matches; 1.0 turns decay off in effect, 0.0 lets
            scores vanish.
        rehearsal: how much each rehearsal adds to ``S``, in units of ``base_stability``
            (>= 0). 1.0: a memory recalled ``n`` times is ``n + 1`` times as stable, as in
            MemoryBank, where each recall adds the initial strength to ``S``. 0 turns the
            strengthening off (the recall still restarts the clock).
        rehearse_threshold: the final score (after decay) a returned result needs to count as
            rehearsed; ``None`` (default) rehearses every result returned. Returned results are
            what the caller asked for, so they count as recalled; set a value on the fusion's
            scale (e.g. 0.5 for ``rsf``) when searches often return weak matches, which would
            otherwise be strengthened too.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    base_stability: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    shape: float = Field(default=1.0, gt=0, le=10)
    floor: float = Field(default=0.2, ge=0, le=1)
    rehearsal: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    rehearse_threshold: float | None = Field(default=None, allow_inf_nan=False)


def retention(age: float, access_count: int, config: DecayConfig) -> float:
    """Ebbinghaus-style retention of a memory, a stretched exponential with a floor.

    ``S = base_stability * (1 + rehearsal * access_count)`` and
    ``R = floor + (1 - floor) * exp(-(age / S) ** shape)`` (sources in :mod:`engram.core._decay`).
    ``enabled`` is not consulted: this is the formula alone.

    Args:
        age: days since the memory was last reinforced (negative counts as 0).
        access_count: how many times it has been rehearsed (>= 0; negative counts as 0).
        config: the curve's parameters.

    Returns:
        ``R`` in ``[floor, 1]``: 1 at age 0, ``floor + (1 - floor) / e`` at ``age = S``, tending
        to ``floor``.
    """
    if not age > 0:  # also NaN
        return 1.0
    stability = config.base_stability * (1.0 + config.rehearsal * max(access_count, 0))
    ratio = age / stability
    if ratio == 0.0 or math.isinf(stability):
        return 1.0
    z = config.shape * math.log(ratio)  # (age / S) ** shape = exp(z), without overflow
    term = 0.0 if z > _MAX_LOG_TERM else math.exp(-math.exp(z))
    return config.floor + (1.0 - config.floor) * term


def age_days(item: MemoryItem, now: datetime) -> float:
    """Days from the memory's last reinforcement to ``now``, at least 0.

    The last reinforcement is the latest of its stored ``created_at``, ``updated_at`` and
    ``last_accessed_at``: a rewrite restarts the clock as a recall does. The ``message_time`` in
    its metadata (when the words were said) is not used: decay models how long the memory has
    gone unused, not the age of the fact.
    """
    ref = item.created_at
    for t in (item.updated_at, item.last_accessed_at):
        if t is not None and t > ref:
            ref = t
    return max((now - ref).total_seconds() / SECONDS_PER_DAY, 0.0)


def decayed_score(score: float, r: float) -> float:
    """``score - (1 - r) * |score|``: ``score * r`` for a score >= 0; a negative score (a
    reranker's logit) moves further down by the same fraction, so age always lowers a score."""
    return score - (1.0 - r) * abs(score)


def apply_decay(hits: Sequence[ScoredMemory], config: DecayConfig, now: datetime) -> list[ScoredMemory]:
    """Weigh each hit by its retention at ``now`` and re-sort, best first (ties keep their order).

    Each hit becomes a new :class:`ScoredMemory` with ``score = decayed_score(score, R)`` and
    ``scores["decay"] = R`` beside the per-path scores; ``R`` is :func:`retention` at
    :func:`age_days`. The identity (the hits as given) when ``config.enabled`` is false.

    Args:
        hits: fused (and reranked) hits.
        now: the search's time; a naive datetime is taken as UTC.
    """
    if not config.enabled:
        return list(hits)
    now = parse_time(now)
    out = []
    for h in hits:
        r = retention(age_days(h.item, now), h.item.access_count, config)
        out.append(ScoredMemory(h.item, decayed_score(h.score, r), {**h.scores, "decay": r}))
    out.sort(key=lambda h: -h.score)
    return out


def check_access_time(at: Any) -> datetime:
    """``at`` as an aware UTC datetime, for :meth:`~engram.core.RehearsalStore.record_access`.

    Raises:
        InvalidInputError: not a datetime, or a naive one.
    """
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInputError(f"an access time must be a timezone-aware datetime, got {at!r}")
    return parse_time(at)


async def rehearse(store: Any, hits: Sequence[ScoredMemory], config: DecayConfig, now: datetime) -> int:
    """Record one access at ``now`` for each returned hit that counts as rehearsed.

    A hit counts when decay is enabled, it is an active memory (an archived version is a past
    text; its id names the active memory, which was not what search returned) and its final
    score is at least ``config.rehearse_threshold`` (every hit when ``None``). The store
    increments the counts itself (:meth:`~engram.core.RehearsalStore.record_access`), so
    concurrent searches lose no count. Stores without the ``"rehearsal"`` capability record
    nothing. A store failure is logged and swallowed: the search's results stand.

    Returns:
        how many memories the store updated (0 when nothing was recorded).
    """
    if not config.enabled or "rehearsal" not in getattr(store, "capabilities", ()):
        return 0
    limit = config.rehearse_threshold
    ids = list(
        dict.fromkeys(
            h.item.id for h in hits if h.item.archived_at is None and (limit is None or h.score >= limit)
        )
    )
    if not ids:
        return 0
    try:
        return int(await store.record_access(ids, parse_time(now)))
    except EngramError as exc:
        log.warning("engram search: recording %d rehearsals failed: %s", len(ids), exc)
        return 0
