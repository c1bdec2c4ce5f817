"""What search does after fusion, before any reranker: neighbour expansion and query-aware boosts.

All of it is learned-free and runs on the fused candidates only (tens of hits), so it costs
microseconds. The weights are :class:`BoostConfig`'s; docs/configuration.md gives each default and
the LoCoMo figure behind it.

- **Neighbour expansion** (:func:`expand_neighbors`): a conversation answers a question one turn
  after it is asked, so a turn next to a strong hit is likely relevant too. Each candidate passes
  ``neighbors * score`` to the memories written just before and after it in its scope; a neighbour
  that was not a candidate joins the list with that score.
- **Query hints** (:func:`query_hints`, :func:`apply_boosts`): a question that names one speaker
  boosts that speaker's memories; a "when" question boosts memories that say when something
  happened (a date, a weekday, "last week"); a question that names a period ("in May", "in
  2023", "on 13 October 2023", "last year") boosts memories whose message time falls in it.

Boosts are added to the fused score (relative score fusion puts it in [0, 1]), never multiplied,
so they reorder near-ties and cannot lift an irrelevant memory over a clearly better one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from ._types import MemoryItem, ScoredMemory

__all__ = ["BoostConfig", "QueryHints", "apply_boosts", "expand_neighbors", "memory_time", "query_hints"]


class BoostConfig(BaseModel):
    """``search.boost``: what search adds to the fused score. ``0`` turns a boost off.

    Attributes:
        neighbors: neighbour expansion weight: a memory gains ``neighbors * s`` where ``s`` is the
            best fused score among the memories written just before and after it in its scope
            (stores with the ``neighbors`` capability; others skip it). Default 0.3: on LoCoMo dev
            it lifts R@10 from 0.683 to 0.745; 0.2-0.4 are within 0.01 of each other.
        speaker: added to the memories whose ``metadata["speaker"]`` is the one speaker, among the
            candidates' speakers, that the query names. Default 0.1.
        temporal: added, for a "when" question, to the memories whose text says when (a date, a
            month, a weekday, "yesterday", "last week", "ago"...). Default 0.1.
        time_window: added to the memories whose message time (``metadata["message_time"]``, else
            ``created_at``) falls in a period the query names: a month ("in May", "June 2023"), a
            day ("on 13 October 2023"), a year ("in 2023"), or, counted back from now, "today",
            "yesterday", "last week", "last month", "last year", "this week/month/year". Default 0.2.
        window_slack_days: days after a named period that still count as in it (people talk about
            an event after it happened). Default 0: on LoCoMo 31 days measured no better.
    """

    model_config = ConfigDict(extra="forbid")

    neighbors: float = Field(default=0.3, ge=0, le=1)
    speaker: float = Field(default=0.1, ge=0, le=1)
    temporal: float = Field(default=0.1, ge=0, le=1)
    time_window: float = Field(default=0.2, ge=0, le=1)
    window_slack_days: float = Field(default=0.0, ge=0, le=3660)


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
_MONTH_ALT = "|".join([*_MONTHS, *(m[:3] for m in _MONTHS if m != "may"), "sept"])
# "13 October 2023", "October 13, 2023", "October 2023", "in May", "Oct 13"
_DATE = re.compile(
    rf"\b(?:(?P<d1>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?)?(?P<mon>{_MONTH_ALT})\b\.?"
    rf"(?:\s+(?P<d2>\d{{1,2}})(?:st|nd|rd|th)?\b)?(?:,?\s+(?P<year>(?:19|20)\d{{2}})\b)?",
    re.IGNORECASE,
)
_PREP = re.compile(r"\b(?:in|of|on|since|during|early|late|mid|by|until|till|before|after|from)\s*$", re.IGNORECASE)
_YEAR = re.compile(r"\b(?:in|of|during|since|from)\s+((?:19|20)\d{2})\b|\b((?:19|20)\d{2})\b", re.IGNORECASE)
_RELATIVE = re.compile(r"\b(today|yesterday|(?:last|this)\s+(?:week|month|year))\b", re.IGNORECASE)
_WHEN = re.compile(r"^\W*when\b|\bwhen\s+(?:did|do|does|was|were|is|are|will|would|has|have|had)\b|\bwhat\s+(?:date|day|time|year|month)\b", re.IGNORECASE)
# A memory "says when": a date, month, weekday, season or relative time word.
_SAYS_WHEN = re.compile(
    rf"\b(?:yesterday|today|tonight|tomorrow|last|next|ago|recently|since|weekend|week|month|year|"
    rf"monday|tuesday|wednesday|thursday|friday|saturday|sunday|summer|winter|spring|autumn|fall|"
    rf"{'|'.join(_MONTHS)}|(?:19|20)\d{{2}})\b",
    re.IGNORECASE,
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(slots=True)
class QueryHints:
    """What :func:`query_hints` read in a query.

    Attributes:
        words: the query's lower-cased words (for matching speaker names).
        asks_when: the query asks for a time ("when did...", "what date...").
        windows: periods the query names, as ``[start, end)`` aware UTC datetimes.
    """

    words: frozenset[str] = frozenset()
    asks_when: bool = False
    windows: list[tuple[datetime, datetime]] = field(default_factory=list)


def _month_window(year: int, month: int) -> tuple[datetime, datetime]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def query_hints(query: str, now: datetime) -> QueryHints:
    """Read the names, "when" and periods in ``query``.

    A month without a year matches that month in the year of ``now`` and the year before; "may",
    "march" and the abbreviations ("jan", "dec") count as months only with a year or after a
    preposition ("in", "on", "of", "since", "during", "by", "before", "after"...).
    Relative periods ("last week", "yesterday") are counted back from ``now`` (aware UTC).
    """
    windows: list[tuple[datetime, datetime]] = []
    for m in _DATE.finditer(query):
        mon_word = m.group("mon").lower()
        day, year = m.group("d1") or m.group("d2"), m.group("year")
        # "may", "march" and the abbreviations are ordinary words or names too ("Jon may...",
        # "did they march", "Jan said"): they count only with a year or after a preposition.
        if not year and (mon_word in ("may", "march") or mon_word not in _MONTHS) and not _PREP.search(query[: m.start()]):
            continue
        month = next(i for i, name in enumerate(_MONTHS, 1) if name.startswith(mon_word[:3]))
        years = [int(year)] if year else [now.year, now.year - 1]
        for y in years:
            if day and 1 <= int(day) <= 31:
                try:
                    start = datetime(y, month, int(day), tzinfo=UTC)
                except ValueError:
                    continue
                windows.append((start, start + timedelta(days=1)))
            else:
                windows.append(_month_window(y, month))
    if not windows:
        for m in _YEAR.finditer(query):
            y = int(m.group(1) or m.group(2))
            windows.append((datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)))
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    for m in _RELATIVE.finditer(query):
        word = " ".join(m.group(1).lower().split())
        if word == "today":
            windows.append((today, today + timedelta(days=1)))
        elif word == "yesterday":
            windows.append((today - timedelta(days=1), today))
        elif word.endswith("week"):
            monday = today - timedelta(days=today.weekday())
            windows.append((monday - timedelta(days=7), monday) if word.startswith("last") else (monday, monday + timedelta(days=7)))
        elif word.endswith("month"):
            this = _month_window(now.year, now.month)
            prev = _month_window(now.year - (now.month == 1), (now.month - 2) % 12 + 1)
            windows.append(prev if word.startswith("last") else this)
        else:
            y = now.year - 1 if word.startswith("last") else now.year
            windows.append((datetime(y, 1, 1, tzinfo=UTC), datetime(y + 1, 1, 1, tzinfo=UTC)))
    return QueryHints(frozenset(w.lower() for w in _WORD.findall(query)), bool(_WHEN.search(query)), windows)


def memory_time(item: MemoryItem) -> datetime:
    """When a memory was said: ``metadata["message_time"]`` (ISO 8601; naive means UTC) when it
    parses, else ``created_at``."""
    raw = item.metadata.get("message_time") if isinstance(item.metadata, Mapping) else None
    if isinstance(raw, str):
        try:
            t = datetime.fromisoformat(raw)
        except ValueError:
            return item.created_at
        return t if t.tzinfo is not None else t.replace(tzinfo=UTC)
    return item.created_at


def _speaker(item: MemoryItem) -> str | None:
    sp = item.metadata.get("speaker") if isinstance(item.metadata, Mapping) else None
    return sp.strip().lower() if isinstance(sp, str) and sp.strip() else None


def _resort(hits: list[ScoredMemory]) -> list[ScoredMemory]:
    return sorted(hits, key=lambda h: -h.score)  # stable: ties keep the fused order


def apply_boosts(
    hits: Sequence[ScoredMemory], hints: QueryHints, config: BoostConfig, scale: float = 1.0
) -> list[ScoredMemory]:
    """Add the speaker, temporal and time-window boosts to ``hits`` and re-sort (stable).

    Each boost applied is ``scale`` times its configured weight and is recorded in ``hit.scores``
    (``"speaker"``, ``"temporal"``, ``"time_window"``) as the amount added. ``scale`` is 1 for
    fused scores in [0, 1] (rsf, dbsf); the engine passes the best fused score for rrf, whose
    scores are far smaller. Hits no boost applies to are left as they are.
    """
    out = list(hits)
    if not out:
        return out
    if scale != 1.0:
        config = config.model_copy(update={k: getattr(config, k) * scale for k in ("speaker", "temporal", "time_window")})
    changed = False
    if config.speaker > 0 and hints.words:
        named = {sp for h in out if (sp := _speaker(h.item)) and (words := set(_WORD.findall(sp)))
                 and words <= hints.words}
        if len(named) == 1:
            (who,) = named
            for h in out:
                if _speaker(h.item) == who:
                    h.score += config.speaker
                    h.scores["speaker"] = config.speaker
                    changed = True
    if config.temporal > 0 and hints.asks_when:
        for h in out:
            if _SAYS_WHEN.search(h.item.memory):
                h.score += config.temporal
                h.scores["temporal"] = config.temporal
                changed = True
    if config.time_window > 0 and hints.windows:
        slack = timedelta(days=config.window_slack_days)
        for h in out:
            t = memory_time(h.item)
            if any(start <= t < end + slack for start, end in hints.windows):
                h.score += config.time_window
                h.scores["time_window"] = config.time_window
                changed = True
    return _resort(out) if changed else out


def expand_neighbors(
    hits: Sequence[ScoredMemory], adjacent: Mapping[str, Sequence[MemoryItem]], weight: float
) -> list[ScoredMemory]:
    """Neighbour expansion: ``score(m) += weight * max(score(n) for n adjacent to m among hits)``.

    Args:
        hits: fused hits, best first; archived versions are neither expanded nor expanded into.
        adjacent: active memory id -> the memories written just before and after it in its scope
            (a store's ``neighbors``).
        weight: in [0, 1].

    Returns:
        The hits and the neighbours that were not hits (each a new hit scored ``weight * s``),
        best first. A hit that gained records ``scores["neighbor"]`` = the neighbour score ``s``.
    """
    if weight <= 0 or not adjacent:
        return list(hits)
    by_id = {h.item.id: h for h in hits if h.item.archived_at is None}
    best: dict[str, float] = {}
    items: dict[str, MemoryItem] = {}
    for mid, h in by_id.items():
        for n in adjacent.get(mid, ()):
            if n.archived_at is None and h.score > best.get(n.id, float("-inf")):
                best[n.id] = h.score
                items[n.id] = n
    out = list(hits)
    for nid, s in best.items():
        if s <= 0:
            continue
        if (h := by_id.get(nid)) is not None:
            h.score += weight * s
        else:
            h = ScoredMemory(items[nid], weight * s, {})
            out.append(h)
        h.scores["neighbor"] = s
    return _resort(out)
