"""Graph memory: entity and relation extraction, entity resolution, contradiction, and the graph
side of recall.

**Add** (beside the fact pipeline, in one task group): the LLM names the entities and relations in
the messages (:data:`~engram.core._prompts.GRAPH_EXTRACT_V1`, as a tool call or a JSON object);
names are resolved against the scope's stored entities (same :func:`~engram.core.entity_key`, else
an embedding within ``graph.entity_threshold`` cosine); a relation already current gains a mention;
a new one is checked against the current relations of its source entity by the LLM
(:data:`~engram.core._prompts.GRAPH_DECIDE_V1`), and each relation it contradicts is *closed*
(``expired_at`` = now, ``invalid_at`` = when the new one started), never deleted. When the
decision reply cannot be used, a rule decides: a relation named in ``graph.single_valued``
(``lives_in``, ``works_at``, ...) closes the current one with the same source and name and another
destination; any other relation closes nothing. A relation stated as ended (``"ended": true``)
closes the matching current one.

**Search**: the question's word n-grams (1-3 words) are looked up as entity keys (entity recall,
plus, when ``graph.query_entity_threshold`` is set, entities whose name embedding is within it of
the question's)
and, in the same task group, the graph is walked ``graph.depth`` hops from them (graph recall).
Each recalled memory then gets::

    score = fused + entity_boost * e + graph_boost * g

where ``e`` in [0, 1] is the share of the matched entities the memory mentions (its text holds
the entity's name as a whole word, or it is the provenance of a relation touching the entity) and
``g`` = ``1 / hops`` of the closest recalled relation the memory is provenance of (0 when none).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from engram.telemetry import llm_task

from ._pipeline import conversation_text, parse_json_object
from ._prompts import GRAPH_DECIDE_V1, GRAPH_EXTRACT_V1
from ._types import (
    Entity,
    GraphBatch,
    LLMResponse,
    Message,
    Relation,
    Scope,
    ScoredMemory,
    entity_key,
    relation_key,
)
from .errors import EngramError, InvalidInputError

if TYPE_CHECKING:
    import numpy as np

    from ._config import GraphConfig

__all__ = [
    "GraphOutcome",
    "GraphPipeline",
    "apply_graph_boost",
    "parse_graph",
    "query_keys",
]

log = logging.getLogger("engram")

MAX_ENTITIES = 100
MAX_RELATIONS = 100
MAX_QUERY_KEYS = 64
ENTITY_TYPES = (
    "person",
    "animal",
    "place",
    "organization",
    "product",
    "project",
    "event",
    "work",
    "concept",
    "other",
)

_STRING = {"type": "string"}
GRAPH_TOOL = {
    "type": "function",
    "function": {
        "name": "record_graph",
        "description": "Record the entities and relations stated in the conversation.",
        "parameters": {
            "type": "object",
            "properties": {
                "entities": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": _STRING,
                            "type": {"type": "string", "enum": list(ENTITY_TYPES)},
                        },
                        "required": ["name", "type"],
                    },
                },
                "relations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "source": _STRING,
                            "relation": _STRING,
                            "destination": _STRING,
                            "valid_at": _STRING,
                            "invalid_at": _STRING,
                            "ended": {"type": "boolean"},
                        },
                        "required": ["source", "relation", "destination"],
                    },
                },
            },
            "required": ["entities", "relations"],
        },
    },
}
DECIDE_TOOL = {
    "type": "function",
    "function": {
        "name": "record_contradictions",
        "description": "List the stored relations that the new relations contradict.",
        "parameters": {
            "type": "object",
            "properties": {
                "contradicted": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"id": {"type": "integer"}, "new": {"type": "integer"}},
                        "required": ["id", "new"],
                    },
                }
            },
            "required": ["contradicted"],
        },
    },
}


# -- parsing the LLM's replies ----------------------------------------------------------------------


@dataclass(slots=True)
class ExtractedRelation:
    source: str
    relation: str
    destination: str
    valid_at: datetime | None = None
    invalid_at: datetime | None = None
    ended: bool = False


@dataclass(slots=True)
class Extracted:
    entities: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (name, type)
    relations: list[ExtractedRelation] = field(default_factory=list)


_DATE = re.compile(r"^\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?\s*$")


def parse_date(value: Any) -> datetime | None:
    """``"2024"``, ``"2024-05"``, ``"2024-05-07"`` or an ISO 8601 time as aware UTC (the start of
    the period); ``None`` for anything else."""
    if not isinstance(value, str) or not value.strip():
        return None
    m = _DATE.match(value)
    try:
        if m:
            return datetime(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1), tzinfo=UTC)
        dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    name = " ".join(value.split())
    if not name or len(name) > 200:
        return None
    try:
        entity_key(name)
    except InvalidInputError:
        return None
    return name


def parse_graph(data: Mapping[str, Any] | None, problems: list[str]) -> Extracted | None:
    """The entities and relations of an extraction reply, or ``None`` when it is not
    ``{"entities": [...], "relations": [...]}``. Unusable items are skipped and listed in ``problems``.
    Every relation endpoint is an entity (added with type ``"other"`` when the reply left it out)."""
    if not isinstance(data, Mapping):
        return None
    ents, rels = data.get("entities", []), data.get("relations", [])
    if (
        not isinstance(ents, list)
        or not isinstance(rels, list)
        or ("entities" not in data and "relations" not in data)
    ):
        return None
    out = Extracted()
    for e in ents[:MAX_ENTITIES]:
        name = _name(e.get("name")) if isinstance(e, Mapping) else None
        if name is None:
            problems.append(f"graph extraction: unusable entity {e!r}; skipped")
            continue
        kind = e.get("type")
        kind = kind.strip().lower() if isinstance(kind, str) and kind.strip() else "other"
        out.entities.setdefault(entity_key(name), (name, kind[:40]))
    for r in rels[:MAX_RELATIONS]:
        if not isinstance(r, Mapping):
            problems.append(f"graph extraction: unusable relation {r!r}; skipped")
            continue
        src, dst = _name(r.get("source")), _name(r.get("destination"))
        name = r.get("relation")
        try:
            rel = relation_key(name) if isinstance(name, str) else None
        except InvalidInputError:
            rel = None
        if src is None or dst is None or rel is None or len(rel) > 80:
            problems.append(f"graph extraction: unusable relation {r!r}; skipped")
            continue
        if entity_key(src) == entity_key(dst):
            problems.append(f"graph extraction: relation from an entity to itself {r!r}; skipped")
            continue
        for n in (src, dst):
            out.entities.setdefault(entity_key(n), (n, "other"))
        out.relations.append(
            ExtractedRelation(
                src,
                rel,
                dst,
                parse_date(r.get("valid_at")),
                parse_date(r.get("invalid_at")),
                r.get("ended") is True,
            )
        )
    return out


def parse_contradictions(
    data: Mapping[str, Any] | None, n_stored: int, n_new: int, problems: list[str]
) -> list[tuple[int, int]] | None:
    """``[(stored id, new number)]`` from a decision reply, or ``None`` when it is not
    ``{"contradicted": [...]}``; pairs with unknown ids are skipped and listed in ``problems``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("contradicted"), list):
        return None
    pairs = []
    for c in data["contradicted"]:
        sid = c.get("id") if isinstance(c, Mapping) else None
        nid = c.get("new") if isinstance(c, Mapping) else None
        if isinstance(sid, str) and sid.strip().isdigit():
            sid = int(sid)
        if isinstance(nid, str) and nid.strip().isdigit():
            nid = int(nid)
        if (
            isinstance(sid, bool)
            or isinstance(nid, bool)
            or not isinstance(sid, int)
            or not isinstance(nid, int)
            or not 0 <= sid < n_stored
            or not 0 <= nid < n_new
        ):
            problems.append(f"graph decision: unknown ids in {c!r}; ignored")
            continue
        pairs.append((sid, nid))
    return pairs


# -- the add side ------------------------------------------------------------------------------------


@dataclass(slots=True)
class GraphOutcome:
    """What the graph side of one add decided: the batch to apply and what it means."""

    batch: GraphBatch = field(default_factory=GraphBatch)
    added: list[Relation] = field(default_factory=list)
    closed: list[Relation] = field(default_factory=list)
    mentioned: list[Relation] = field(default_factory=list)
    entities: int = 0
    problems: list[str] = field(default_factory=list)
    failed: str | None = None

    def link(self, memory_ids: Sequence[str]) -> None:
        """Record the add's memories as the provenance of the relations it stated."""
        for r in (*self.added, *self.mentioned):
            r.memory_ids = list(dict.fromkeys([*r.memory_ids, *memory_ids]))

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "entities": self.entities,
            "added": [r.to_dict() for r in self.added],
            "closed": [r.to_dict() for r in self.closed],
            "mentioned": len(self.mentioned),
        }
        if self.failed:
            out["failed"] = self.failed
        if self.problems:
            out["problems"] = list(self.problems)
        return out


def _exact(scope: Scope, obj: Entity | Relation) -> bool:
    return (obj.user_id, obj.agent_id, obj.run_id) == (scope.user_id, scope.agent_id, scope.run_id)


class GraphPipeline:
    """The graph side of one ``add(..., infer=True)``: built per call, writes nothing itself.

    Args:
        llm: the configured LLM.
        store: the graph store.
        embed: ``async (texts) -> (n, dims) float32``, the engine's document embedding.
        scope: where the entities and relations go (resolution is within this exact scope).
        now: the time of this add (aware UTC).
        timeout: seconds one LLM call may take.
        config: the ``graph`` settings.
    """

    def __init__(
        self,
        llm: Any,
        store: Any,
        embed: Callable[[Sequence[str]], Awaitable[np.ndarray]],
        scope: Scope,
        now: datetime,
        timeout: float,
        config: GraphConfig,
    ) -> None:
        self.llm, self.store, self.embed, self.scope = llm, store, embed, scope
        self.now, self.timeout, self.config = now, timeout, config

    async def _ask(self, task: str, system: str, user: str, tool: dict[str, Any]) -> LLMResponse:
        """One LLM call under the timeout; ``task`` names it in telemetry (``engram.llm.task``)."""
        with anyio.fail_after(self.timeout), llm_task(task):
            return await self.llm.generate(
                [{"role": "system", "content": system}, {"role": "user", "content": user}], tools=[tool]
            )

    async def run(self, messages: Sequence[Message], speaker: str) -> GraphOutcome:
        """Extract, resolve and decide; the caller links provenance and applies ``out.batch``.
        Never raises for the LLM's or the graph store's failures: they are reported in the outcome."""
        out = GraphOutcome()
        try:
            await self._run(messages, speaker, out)
        except (EngramError, TimeoutError) as exc:
            out.failed = f"graph update failed ({type(exc).__name__}: {exc}); the graph was not changed"
            out.batch = GraphBatch()
            out.added, out.closed, out.mentioned = [], [], []
        return out

    async def _run(self, messages: Sequence[Message], speaker: str, out: GraphOutcome) -> None:
        try:
            reply = await self._ask(
                "graph_extract", GRAPH_EXTRACT_V1, conversation_text(messages, self.now, speaker), GRAPH_TOOL
            )
        except (EngramError, TimeoutError) as exc:
            out.failed = f"graph extraction failed ({type(exc).__name__}: {exc}); the graph was not changed"
            return
        found = parse_graph(parse_json_object(reply), out.problems)
        if found is None:
            out.failed = 'graph extraction reply was not {"entities": [...], "relations": [...]}; the graph was not changed'
            return
        if not found.entities:
            return
        when = max((m.time for m in messages if m.time is not None), default=self.now)
        entities = await self._resolve(found, out)
        await self._relate(found, entities, when, out)

    async def _resolve(self, found: Extracted, out: GraphOutcome) -> dict[str, Entity]:
        """key -> the entity it resolves to (stored, merged by embedding, or new)."""
        keys = list(found.entities)
        names = [found.entities[k][0] for k in keys]
        vectors_task: dict[str, Any] = {}
        stored_list: list[Entity] = []

        async def vectors() -> None:
            vectors_task["v"] = await self.embed(names)

        async def stored() -> None:
            stored_list.extend(await self.store.entities(self.scope, keys=keys))

        async with anyio.create_task_group() as tg:
            tg.start_soon(vectors)
            tg.start_soon(stored)
        vecs = vectors_task["v"]
        by_key = {e.key: e for e in stored_list if _exact(self.scope, e)}
        resolved: dict[str, Entity] = {}
        missing = [i for i, k in enumerate(keys) if k not in by_key]
        similar: dict[int, Entity] = {}

        async def nearest(i: int) -> None:
            hits = await self.store.similar_entities(
                self.scope, vecs[i].tolist(), limit=5, min_score=self.config.entity_threshold
            )
            for ent, _ in hits:
                if _exact(self.scope, ent):
                    similar[i] = ent
                    return

        if missing:
            async with anyio.create_task_group() as tg:
                for i in missing:
                    tg.start_soon(nearest, i)
        touched: dict[str, Entity] = {}
        for i, k in enumerate(keys):
            name, kind = found.entities[k]
            ent = by_key.get(k) or similar.get(i)
            if ent is None:
                ent = Entity(
                    name=name,
                    type=kind,
                    user_id=self.scope.user_id,
                    agent_id=self.scope.agent_id,
                    run_id=self.scope.run_id,
                    embedding=[float(x) for x in vecs[i]],
                    key=k,
                    created_at=self.now,
                )
                out.entities += 1
            elif ent.id not in touched:
                ent.mentions += 1
                ent.updated_at = self.now
                if ent.type in ("entity", "other") and kind not in ("entity", "other"):
                    ent.type = kind
            touched[ent.id] = ent
            resolved[k] = ent
        out.batch.entities.extend(touched.values())
        return resolved

    async def _relate(
        self, found: Extracted, ents: dict[str, Entity], when: datetime, out: GraphOutcome
    ) -> None:
        ids = sorted({e.id for e in ents.values()})
        current = [r for r in await self.store.relations(self.scope, entity_ids=ids) if _exact(self.scope, r)]
        by_triple = {(r.source_id, r.relation, r.destination_id): r for r in current}
        fresh: list[Relation] = []
        changed: dict[str, Relation] = {}
        for x in found.relations:
            src, dst = ents[entity_key(x.source)], ents[entity_key(x.destination)]
            if src.id == dst.id:  # two names merged into one entity
                continue
            triple = (src.id, x.relation, dst.id)
            old = by_triple.get(triple)
            if x.ended:
                if old is not None and old.expired_at is None:
                    self._close(old, x.invalid_at or when)
                    changed[old.id] = old
                    out.closed.append(old)
                continue
            if old is not None:
                if old.id not in changed:
                    old.mentions += 1
                    changed[old.id] = old
                    out.mentioned.append(old)
                continue
            rel = Relation(
                source=src.name,
                relation=x.relation,
                destination=dst.name,
                user_id=self.scope.user_id,
                agent_id=self.scope.agent_id,
                run_id=self.scope.run_id,
                valid_at=x.valid_at or when,
                invalid_at=x.invalid_at,
                created_at=self.now,
                source_id=src.id,
                destination_id=dst.id,
            )
            by_triple[triple] = rel
            fresh.append(rel)
        if fresh:
            candidates = [r for r in current if r.id not in changed and r.expired_at is None]
            for old, new in await self._contradictions(candidates, fresh, out):
                if old.expired_at is None:
                    self._close(old, new.valid_at or when)
                    changed[old.id] = old
                    out.closed.append(old)
        out.added = fresh
        out.batch.relations.extend([*changed.values(), *fresh])

    def _close(self, rel: Relation, at: datetime) -> None:
        """Retire ``rel`` now; in the world it stopped holding at ``at``. A ``valid_at`` that engram
        only inferred from a message date may lie after a stated end: the start is then unknown."""
        rel.expired_at = self.now
        if rel.invalid_at is None:
            rel.invalid_at = at
            if rel.valid_at is not None and rel.valid_at > at:
                rel.valid_at = None

    async def _contradictions(
        self, stored: list[Relation], fresh: list[Relation], out: GraphOutcome
    ) -> list[tuple[Relation, Relation]]:
        """Which stored relations each new one contradicts: the LLM's decision, or the rule."""
        sources = {r.source_id for r in fresh}
        stored = [r for r in stored if r.source_id in sources or r.destination_id in sources]
        if not stored:
            return []
        single = {relation_key(s) for s in self.config.single_valued}
        payload = {
            "stored": [{"id": i, "relation": r.triple()} for i, r in enumerate(stored)],
            "new": [
                {"new": i, "relation": r.triple(), "single_valued": r.relation in single}
                for i, r in enumerate(fresh)
            ],
        }
        try:
            reply = await self._ask("graph_contradictions", GRAPH_DECIDE_V1, json.dumps(payload, ensure_ascii=False), DECIDE_TOOL)
            pairs = parse_contradictions(parse_json_object(reply), len(stored), len(fresh), out.problems)
            if pairs is None:
                out.problems.append('graph decision reply was not {"contradicted": [...]}; decided by rule')
        except (EngramError, TimeoutError) as exc:
            out.problems.append(f"graph decision failed ({type(exc).__name__}: {exc}); decided by rule")
            pairs = None
        if pairs is not None:
            return [
                (stored[s], fresh[n])
                for s, n in pairs
                if stored[s].source_id == fresh[n].source_id or stored[s].destination_id == fresh[n].source_id
            ]
        return contradicted_by_rule(stored, fresh, single)


def contradicted_by_rule(
    stored: Iterable[Relation], fresh: Iterable[Relation], single_valued: set[str]
) -> list[tuple[Relation, Relation]]:
    """The rule-based fallback: a new single-valued relation closes the current one with the same
    source and relation name and another destination; multi-valued relations close nothing."""
    pairs = []
    for new in fresh:
        if new.relation not in single_valued:
            continue
        for old in stored:
            if (
                old.source_id == new.source_id
                and old.relation == new.relation
                and old.destination_id != new.destination_id
            ):
                pairs.append((old, new))
    return pairs


# -- the search side ---------------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*")
_POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)


def query_keys(query: str, max_words: int = 3) -> list[str]:
    """The entity keys a question may name: every run of 1-``max_words`` words, possessives
    dropped (``"Alice's"`` -> ``"alice"``), longest first, at most 64."""
    words = [_POSSESSIVE.sub("", w) for w in _WORD.findall(query)]
    keys: dict[str, None] = {}
    for n in range(max_words, 0, -1):
        for i in range(len(words) - n + 1):
            try:
                keys[entity_key(" ".join(words[i : i + n]))] = None
            except InvalidInputError:
                continue
    return list(keys)[:MAX_QUERY_KEYS]


def apply_graph_boost(
    hits: list[ScoredMemory],
    entities: Sequence[Entity],
    relations: Sequence[tuple[Relation, int]],
    entity_boost: float,
    graph_boost: float,
) -> list[ScoredMemory]:
    """Add ``entity_boost * e + graph_boost * g`` to each hit's score (see the module docstring),
    record ``e`` and ``g`` in ``hit.scores["entity"]`` / ``["graph"]`` when non-zero, and re-sort."""
    if not hits or (not entities and not relations):
        return hits
    ents = {e.id: e for e in entities}
    patterns = {eid: re.compile(r"(?<![^\W_])" + re.escape(e.key) + r"(?![^\W_])") for eid, e in ents.items()}
    provenance: dict[str, set[str]] = {}  # memory id -> entity ids it is provenance for
    closest: dict[str, int] = {}  # memory id -> fewest hops
    for rel, hops in relations:
        for mid in rel.memory_ids:
            closest[mid] = min(hops, closest.get(mid, hops))
            for eid in (rel.source_id, rel.destination_id):
                if eid in ents:
                    provenance.setdefault(mid, set()).add(eid)
    for h in hits:
        text = " ".join(h.item.memory.casefold().split())
        mentioned = {eid for eid, p in patterns.items() if p.search(text)} | provenance.get(h.item.id, set())
        e = len(mentioned) / len(ents) if ents else 0.0
        g = 1.0 / closest[h.item.id] if h.item.id in closest else 0.0
        if e:
            h.scores["entity"] = e
        if g:
            h.scores["graph"] = g
        h.score += entity_boost * e + graph_boost * g
    hits.sort(key=lambda h: -h.score)
    return hits


def holds_at(relations: Iterable[Relation], when: datetime) -> list[Relation]:
    """The relations that held in the world at ``when`` (see :meth:`Relation.holds_at`); a relation
    with no ``valid_at`` counts from when engram learned it."""
    out = []
    for r in relations:
        start = r.valid_at or r.created_at
        if start <= when and (r.invalid_at is None or when < r.invalid_at):
            out.append(r)
    return out
