"""Context-aware weighting: a query's task type times a memory's type (off by default).

A search may name the *task* behind its query (troubleshooting, design, factual lookup, planning,
general). Each memory carries a *memory type* in ``metadata["memory_type"]`` (the LLM pipeline
writes ``factual``, ``preference``, ``procedural`` or ``episodic``; a caller may set any string).
The weight matrix ``search.context.weights[task][memory_type]`` multiplies each hit's fused score,
so that, say, a troubleshooting question favours procedural memories (how things are done) over
preferences. A memory without a type uses the ``untyped`` column.

When a task type applies:

- ``search(task_type="troubleshooting")`` (or another name): always, whatever ``enabled`` says;
  passing one is the caller's opt-in for that call.
- ``search(task_type="auto")``: the query is classified, whatever ``enabled`` says.
- ``search()`` with no task type: classified only when ``search.context.enabled`` is true;
  otherwise nothing changes (the hits are returned as recalled).

The classifier is :func:`classify_task` (local, deterministic, English keyword patterns, no I/O)
unless ``search.context.classifier = "llm"``, which asks the memory's LLM one short question
(``CLASSIFY_TASK_V1``); a failed call or an unusable reply falls back to the local classifier with
a warning, never failing the search.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import anyio
from engram.telemetry import llm_task
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._pipeline import JSON_OBJECT, parse_json_object
from ._types import MemoryItem, ScoredMemory
from .errors import ConfigurationError, EngramError, InvalidInputError

__all__ = [
    "CLASSIFY_TASK_V1",
    "DEFAULT_WEIGHTS",
    "TASK_TYPES",
    "UNTYPED",
    "ContextConfig",
    "TaskType",
    "apply_context",
    "classify_task",
    "memory_type_of",
    "normalize_task_type",
    "resolve_task_type",
    "task_scores",
]

log = logging.getLogger("engram")

TaskType = Literal["troubleshooting", "design", "factual_lookup", "planning", "general"]
TASK_TYPES: tuple[str, ...] = get_args(TaskType)
UNTYPED = "untyped"

# Rows: task types; columns: memory types. Modest weights (0.9-1.3): relevance stays the main
# signal, the task only breaks near-ties (docs/configuration.md#searchcontext gives the reasons).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "troubleshooting": {"factual": 1.0, "preference": 0.9, "procedural": 1.3, "episodic": 1.1, UNTYPED: 1.0},
    "design": {"factual": 1.1, "preference": 1.2, "procedural": 1.0, "episodic": 0.9, UNTYPED: 1.0},
    "factual_lookup": {"factual": 1.3, "preference": 1.0, "procedural": 0.9, "episodic": 1.0, UNTYPED: 1.0},
    "planning": {"factual": 1.0, "preference": 1.1, "procedural": 1.1, "episodic": 1.2, UNTYPED: 1.0},
    "general": {"factual": 1.0, "preference": 1.0, "procedural": 1.0, "episodic": 1.0, UNTYPED: 1.0},
}


def _key(name: str) -> str:
    """``"Factual Lookup"``, ``"factual-lookup"`` -> ``"factual_lookup"``."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def normalize_task_type(task_type: object, *, allow_auto: bool = False) -> str:
    """The canonical name of a task type: case, spaces and hyphens are forgiven
    (``"Factual lookup"`` -> ``"factual_lookup"``).

    Raises:
        InvalidInputError: not a string, or not one of :data:`TASK_TYPES` (nor ``"auto"`` when
            ``allow_auto``); the message lists the valid names.
    """
    valid = TASK_TYPES + (("auto",) if allow_auto else ())
    if isinstance(task_type, str):
        name = _key(task_type)
        if name in valid:
            return name
    raise InvalidInputError(f"task_type must be one of {', '.join(valid)}; got {task_type!r}")


class ContextConfig(BaseModel):
    """``search.context``: context-aware weighting (off by default).

    Attributes:
        enabled: classify every query that comes without a ``task_type`` and weight its hits.
            ``False`` (default): only a search given ``task_type`` is weighted.
        classifier: ``"local"`` (default; :func:`classify_task`, no I/O) or ``"llm"`` (one short
            call to ``MemoryConfig.llm`` per classified query, falling back to ``"local"`` when
            the call fails or its reply is unusable).
        llm_timeout: seconds the LLM classification may take before the local classifier is used.
        weights: ``{task_type: {memory_type: weight}}``, merged cell by cell over
            :data:`DEFAULT_WEIGHTS` (give only the cells you change). Task types must be among
            :data:`TASK_TYPES` (``"factual lookup"`` is accepted for ``factual_lookup``); memory
            types are free strings (new columns are allowed; ``untyped`` is the column of memories
            with no ``memory_type``); a memory type with no cell in a row weighs 1.0. Weights are
            finite and > 0.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    classifier: Literal["local", "llm"] = "local"
    llm_timeout: float = Field(default=10.0, gt=0)
    weights: dict[str, dict[str, float]] = Field(
        default_factory=lambda: {task: dict(row) for task, row in DEFAULT_WEIGHTS.items()}
    )

    @field_validator("weights", mode="before")
    @classmethod
    def _merge_weights(cls, value: Any) -> dict[str, dict[str, float]]:
        if not isinstance(value, Mapping):
            raise ValueError('weights must be a mapping {task_type: {memory_type: weight}}')
        merged = {task: dict(row) for task, row in DEFAULT_WEIGHTS.items()}
        for task, row in value.items():
            name = _key(task) if isinstance(task, str) else None
            if name not in merged:
                raise ValueError(f"unknown task type {task!r} in weights; the task types are {', '.join(TASK_TYPES)}")
            if not isinstance(row, Mapping):
                raise ValueError(f"weights[{task!r}] must be a mapping {{memory_type: weight}}, got {row!r}")
            for mtype, weight in row.items():
                if not isinstance(mtype, str) or not mtype.strip():
                    raise ValueError(f"weights[{task!r}]: a memory type must be a non-empty string, got {mtype!r}")
                if (
                    isinstance(weight, bool)
                    or not isinstance(weight, int | float)
                    or not math.isfinite(weight)
                    or weight <= 0
                ):
                    raise ValueError(f"weights[{task!r}][{mtype!r}] must be a finite number > 0, got {weight!r}")
                merged[name][mtype.strip().lower()] = float(weight)
        return merged


# -- the local classifier ---------------------------------------------------------------------

# (pattern, weight) per task type, matched on the lower-cased query; each pattern counts once.
_PATTERNS: dict[str, list[tuple[str, float]]] = {
    "troubleshooting": [
        (r"\w*error(s)?\b|\bexceptions?\b|\btraceback\b|\bstack ?(trace|overflow)\b|\bsegfault", 2.0),
        (r"\bcrash(es|ed|ing)?\b|\bfail(s|ed|ing|ures?)?\b|\bbug(s|gy)?\b|\bdebug(s|ged|ging)?\b", 2.0),
        (r"\btroubleshoot\w*|\bworkaround\b|\bflaky\b|\bwent wrong\b|\bgo(es)? wrong\b", 2.0),
        (r"\b(hangs?|hanging|hung|freez\w*|frozen|stuck|timed? out|times out|timeouts?)\b", 2.0),
        (r"(\bnot|n't|\bcannot|\bcant) (work|start|load|connect|open|run|boot|compile|respond|"
         r"heat|print|sync|install|charge|turn on)\w*", 2.0),
        (r"\bkeeps? (\w+ing)\b", 1.5),
        (r"\bfix(es|ed|ing)?\b|\bbroken\b|\bbreaks?\b|\bdenied\b|\bleak(s|ing)?\b|\bran out of\b", 1.5),
        (r"\b(issue|problem|glitch|trouble)s?\b|\bwhy (is|are|does|do|did|won't|isn't|doesn't|can't)\b", 1.5),
        (r"\bslow(er|ly|s)?\b|\bwrong\b", 1.0),
    ],
    "design": [
        (r"\barchitect(ure|ures|ural|ed|ing)?\b|\btrade-?offs?\b|\bpros and cons\b", 3.0),
        (r"\bdesign(s|ed|ing)?\b|\blayout\b|\bschema\b|\bdata model\b|\brefactor\w*|\bnaming\b", 2.0),
        (r"\b(compare|comparing|comparison|versus|vs\.?)\b|\bshould\b.*\b(or|into)\b", 2.0),
        (r"\bhow (should|would|could) (i|we|you|it|they|the|this)\b|\bstructur(e|ed|ing)\b", 1.5),
        (r"\b(best|better|right) way\b|\bapproach\b|\bpatterns?\b|\binterfaces?\b|\bcolou?r scheme\b", 1.5),
        (r"\bmodel(l?ing)?\b|\bconventions?\b|\bapi\b|\bframework\b|\blayer\b|\bideas?\b", 1.0),
        (r"\bpick\b|\bchoose\b|\bchoice\b|\bsplit\b|\bstyle\b", 1.0),
    ],
    "factual_lookup": [
        (r"^(who|whom|whose|when|where)\b|^(who|when|where|what|which)'?s\b", 1.5),
        (r"^(what|which)\b|\bwhat (is|are|was|were)\b|\bwhat (time|kind|type|sort)\b", 1.0),
        (r"\bhow (old|many|much|long|tall|far)\b|\bdoes (he|she|they|the user|\w+) have\b", 2.0),
        (r"\b(name|birthday|address|e-?mail|phone|number|password|age|born|favou?rite)\b", 1.5),
    ],
    "planning": [
        (r"\bplan(s|ned|ning)?\b|\bschedul\w*|\broadmap\b|\bto-?do\b|\bitinerar\w*", 2.5),
        (r"\b(deadline|milestone|timeline|agenda|calendar|goal|reminder)s?\b|\bremind\b", 2.5),
        (r"\bnext (week|month|year|steps?|time|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", 2.0),
        (r"\b(tomorrow|tonight|upcoming|coming up)\b|\bwhat should (i|we) do\b", 2.0),
        (r"\bthis (week|weekend|month|year|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b", 2.0),
        (r"\borgani[sz]e\b|\bprepare\b|\bprioriti[sz]\w*|\bphases?\b|\bappointments?\b", 1.5),
        (r"\bsteps\b|\b(launch|release|trip|vacation|holiday)\b|\bin (january|february|march|april|may|june|"
         r"july|august|september|october|november|december)\b", 1.0),
    ],
}
_COMPILED = {task: [(re.compile(p), w) for p, w in pats] for task, pats in _PATTERNS.items()}
_MIN_SCORE = 1.5  # below this, no task is clear enough: general
_MARGIN = 0.5  # the best task must lead the second by at least this much, else general


def task_scores(query: str) -> dict[str, float]:
    """The local classifier's evidence: per task type (``general`` excluded), the summed weights
    of its patterns the query matches (each pattern once). Lower-cases the query and straightens
    curly apostrophes first."""
    text = query.lower().replace("\u2019", "'").strip()
    return {task: sum(w for rx, w in pats if rx.search(text)) for task, pats in _COMPILED.items()}


def classify_task(query: str) -> TaskType:
    """The task type of ``query``, by English keyword and phrase patterns (deterministic, no I/O).

    Each task type has weighted patterns (``"traceback"``, ``"keeps crashing"`` for
    troubleshooting; ``"trade-offs"``, ``"how should we"`` for design; ``"what's my"``,
    ``"birthday"`` for factual lookup; ``"next week"``, ``"roadmap"`` for planning); the scores are
    :func:`task_scores`. The best task wins when it scores at least 1.5 and leads the second by at
    least 0.5; otherwise, and for a query in another language, the answer is ``"general"``.
    Measured in ``tests/test_context.py``: 60 of 60 development queries right (the patterns were
    tuned on them) and 27 of 30 held-out queries (written with them, never tuned on).
    """
    scores = sorted(task_scores(query).items(), key=lambda kv: kv[1], reverse=True)
    (best, top), (_, second) = scores[0], scores[1]
    if top < _MIN_SCORE or top - second < _MARGIN:
        return "general"
    return best  # type: ignore[return-value]


# -- the LLM classifier -------------------------------------------------------------------------

CLASSIFY_TASK_V1 = """\
You route questions sent to an assistant's long-term memory. Decide what kind of task the person \
asking is working on, so that the memory can favour the kinds of memories that help with it.

- "troubleshooting": something is broken, failing, slow or behaving wrongly, and they want the \
cause or a fix.
- "design": deciding how something should be built, structured, organised or shaped; weighing \
options and their trade-offs.
- "factual_lookup": one specific fact about a person, place, thing or date (a name, an address, a \
birthday, a preference).
- "planning": arranging what happens next: schedules, steps, goals, deadlines, trips.
- "general": anything else, or when none of the above clearly fits.

The question is the user message. Answer with one JSON object and nothing else:
{"task_type": "troubleshooting" | "design" | "factual_lookup" | "planning" | "general"}"""


async def _classify_llm(query: str, llm: Any, timeout: float) -> str:
    """The LLM's task type for ``query``; the local classifier's when the call or its reply fails."""
    try:
        with anyio.fail_after(timeout), llm_task("classify_task"):
            reply = await llm.generate(
                [{"role": "system", "content": CLASSIFY_TASK_V1}, {"role": "user", "content": query}],
                response_format=JSON_OBJECT,
                temperature=0.0,
            )
    except (EngramError, TimeoutError) as exc:
        log.warning("engram search: task classification by the LLM failed (%s: %s); used the local classifier",
                    type(exc).__name__, exc)
        return classify_task(query)
    data = parse_json_object(reply)
    value = data.get("task_type") if data is not None else getattr(reply, "text", None)
    if isinstance(value, str) and _key(value.strip().strip("\"'.")) in TASK_TYPES:
        return _key(value.strip().strip("\"'."))
    text = getattr(reply, "text", "")
    log.warning("engram search: the LLM's task classification %r is not one of %s; used the local classifier",
                text[:200], ", ".join(TASK_TYPES))
    return classify_task(query)


async def resolve_task_type(query: str, task_type: str | None, config: ContextConfig, llm: Any) -> str | None:
    """The task type a search uses, or ``None`` for no weighting.

    Args:
        query: the search query (classified when needed).
        task_type: the caller's: one of :data:`TASK_TYPES` (spelling forgiven, see
            :func:`normalize_task_type`), ``"auto"`` to classify, or ``None`` (classify when
            ``config.enabled``, else no weighting).
        config: ``search.context``.
        llm: the memory's LLM, or ``None``; used when ``config.classifier == "llm"``.

    Returns:
        A name from :data:`TASK_TYPES`, or ``None``.

    Raises:
        InvalidInputError: an unknown ``task_type``.
        ConfigurationError: a query must be classified, ``config.classifier`` is ``"llm"`` and no
            LLM is configured.
    """
    if task_type is None:
        if not config.enabled:
            return None
        task_type = "auto"
    name = normalize_task_type(task_type, allow_auto=True)
    if name != "auto":
        return name
    if config.classifier == "llm":
        if llm is None:
            raise ConfigurationError(
                'search.context.classifier is "llm" but no LLM is configured: set MemoryConfig.llm, '
                'or use search.context.classifier = "local"'
            )
        return await _classify_llm(query, llm, config.llm_timeout)
    return classify_task(query)


# -- weighting ----------------------------------------------------------------------------------


def memory_type_of(item: MemoryItem) -> str:
    """``item.metadata["memory_type"]`` lower-cased, or :data:`UNTYPED` when it is missing, empty
    or not a string (verbatim memories stored by ``add(infer=False)`` have none unless the caller
    set one)."""
    value = item.metadata.get("memory_type") if isinstance(item.metadata, Mapping) else None
    if isinstance(value, str) and value.strip():
        return value.strip().lower()
    return UNTYPED


def apply_context(hits: Sequence[ScoredMemory], task_type: str | None, config: ContextConfig) -> list[ScoredMemory]:
    """Weight each hit by ``config.weights[task_type][memory type]`` and re-sort.

    The new score is ``score * weight`` (``score / weight`` for a negative score, so that a weight
    above 1 always moves a hit up); a memory type with no cell in the row weighs 1.0. Each
    weighted hit is a new :class:`ScoredMemory` whose ``scores`` add ``"context": weight``; the
    sort is stable (equal scores keep their recalled order).

    Args:
        hits: best first.
        task_type: a name from :data:`TASK_TYPES`, or ``None``: then the hits come back unchanged
            (the same objects, order and scores).
        config: ``search.context``; its ``enabled`` flag is not consulted here (see
            :func:`resolve_task_type`).

    Raises:
        InvalidInputError: an unknown ``task_type``.
    """
    if task_type is None:
        return list(hits)
    row = config.weights[normalize_task_type(task_type)]
    out: list[ScoredMemory] = []
    for hit in hits:
        weight = row.get(memory_type_of(hit.item), 1.0)
        score = hit.score * weight if hit.score >= 0 else hit.score / weight
        out.append(ScoredMemory(hit.item, score, {**hit.scores, "context": weight}))
    out.sort(key=lambda h: h.score, reverse=True)
    return out
