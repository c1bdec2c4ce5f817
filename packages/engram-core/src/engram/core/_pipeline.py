"""The LLM memory pipeline behind ``add(..., infer=True)``.

Steps (DESIGN §3): extract facts from the messages, embed them in one batch, recall the scope's
related memories, let the LLM decide ADD / UPDATE / DELETE / NONE per fact against those memories
(shown under small integer ids), drop exact duplicates by content hash, and build one
:class:`WriteBatch` with a history event per change. Bad LLM output never costs data: what cannot
be parsed is reported and the input is kept (extraction failing stores the messages verbatim; a
decision failing adds the extracted facts).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
from engram.telemetry import llm_task

from ._prompts import (
    DECIDE_V1,
    EXTRACT_AGENT_V1,
    EXTRACT_USER_V1,
    MEMORY_CATEGORIES,
    MEMORY_TYPES,
    PROCEDURAL_V1,
)
from ._types import (
    Event,
    HistoryEvent,
    LLMResponse,
    MemoryItem,
    Message,
    Scope,
    VectorQuery,
    WriteBatch,
    content_hash,
)
from .errors import EngramError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["Fact", "InferOutcome", "parse_json_object"]

log = logging.getLogger("engram")

RELATED_PER_FACT = 5
MAX_RELATED = 30
MAX_FACTS = 50
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
JSON_OBJECT = {"type": "json_object"}


def parse_json_object(reply: LLMResponse | str) -> dict[str, Any] | None:
    """The JSON object in an LLM reply, or ``None``.

    Accepts a tool call's arguments, a bare object, an object inside a Markdown code fence, or an
    object with prose around it (the first ``{`` from which a whole object decodes).
    """
    if isinstance(reply, LLMResponse):
        for call in reply.tool_calls:
            args = call.get("arguments") if isinstance(call, Mapping) else None
            if isinstance(args, Mapping):
                return dict(args)
            if isinstance(args, str):
                parsed = parse_json_object(args)
                if parsed is not None:
                    return parsed
        text = reply.text
    else:
        text = reply
    if not isinstance(text, str) or not text.strip():
        return None
    m = _FENCE.match(text)
    if m:
        text = m.group(1)
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else None
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    start = text.find("{")
    tries = 0
    while start != -1 and tries < 20:
        try:
            value, _ = decoder.raw_decode(text, start)
            if isinstance(value, dict):
                return value
        except ValueError:
            pass
        start = text.find("{", start + 1)
        tries += 1
    return None


@dataclass(slots=True)
class Fact:
    text: str
    type: str = "factual"
    category: str = "misc"


@dataclass(slots=True)
class InferOutcome:
    """What the pipeline did: the batch to commit, the results to return and the problems seen."""

    batch: WriteBatch = field(default_factory=WriteBatch)
    results: list[dict[str, Any]] = field(default_factory=list)
    facts: int = 0
    fallback: str | None = None
    problems: list[str] = field(default_factory=list)
    unchanged: int = 0  # facts that changed nothing: a NONE decision or an exact duplicate (telemetry)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"facts": self.facts}
        if self.fallback:
            out["fallback"] = self.fallback
        if self.problems:
            out["problems"] = list(self.problems)
        return out


def conversation_text(messages: Sequence[Message], today: datetime, speaker: str | None = None) -> str:
    """The conversation as the extraction prompts read it: the current date (and the user's name,
    when given), then one ``[date] role (name): text`` line per message."""
    head = [f"Current date: {today.date().isoformat()}"]
    if speaker is not None:
        head.append(f"The user's name: {speaker}")
    lines = [*head, "", "Conversation:"]
    for m in messages:
        when = f"[{m.time.strftime('%Y-%m-%d %H:%M')}] " if m.time else ""
        who = f"{m.role} ({m.name})" if m.name else m.role
        lines.append(f"{when}{who}: {m.content}")
    return "\n".join(lines)


def parse_facts(data: dict[str, Any] | None) -> list[Fact] | None:
    """Validate an extraction reply; ``None`` when it is not ``{"facts": [...]}``."""
    if data is None or not isinstance(data.get("facts"), list):
        return None
    facts: list[Fact] = []
    for f in data["facts"]:
        if isinstance(f, str):
            text, kind, cat = f, None, None
        elif isinstance(f, Mapping):
            text, kind, cat = f.get("text", f.get("fact")), f.get("type"), f.get("category")
        else:
            continue
        if not isinstance(text, str) or not text.strip():
            continue
        facts.append(
            Fact(
                text.strip(),
                kind if kind in MEMORY_TYPES else "factual",
                cat if cat in MEMORY_CATEGORIES else "misc",
            )
        )
    return facts[:MAX_FACTS]


@dataclass(slots=True)
class Action:
    fact: int
    event: Event
    id: int | None
    text: str | None


def parse_actions(data: dict[str, Any] | None, n_facts: int, n_stored: int, problems: list[str]) -> list[Action] | None:
    """Validate a decision reply; ``None`` when it is not ``{"actions": [...]}``. Actions with an
    unknown fact index, event or stored id are dropped and reported."""
    if data is None or not isinstance(data.get("actions"), list):
        return None
    out: list[Action] = []
    for a in data["actions"]:
        if not isinstance(a, Mapping):
            problems.append(f"decision: ignored a non-object action {a!r:.80}")
            continue
        fact, event, mid, text = a.get("fact"), a.get("event"), a.get("id"), a.get("text")
        if isinstance(event, str):
            event = event.strip().upper()
        if isinstance(fact, str) and fact.strip().isdigit():
            fact = int(fact)
        if isinstance(mid, str) and mid.strip().isdigit():
            mid = int(mid)
        if isinstance(fact, bool) or not isinstance(fact, int) or not 0 <= fact < n_facts:
            problems.append(f"decision: ignored an action for unknown fact {fact!r:.40}")
            continue
        if event not in ("ADD", "UPDATE", "DELETE", "NONE"):
            problems.append(f"decision: ignored unknown event {event!r:.40} for fact {fact}")
            continue
        if mid is not None and (isinstance(mid, bool) or not isinstance(mid, int) or not 0 <= mid < n_stored):
            problems.append(f"decision: unknown memory id {mid!r:.40} for fact {fact}")
            mid = None
        if event in ("UPDATE", "DELETE") and mid is None:
            if event == "DELETE":
                problems.append(f"decision: DELETE without a known id for fact {fact}; nothing deleted")
                continue
            problems.append(f"decision: UPDATE without a known id for fact {fact}; added instead")
            event = "ADD"
        out.append(Action(fact, Event(event), mid, text.strip() if isinstance(text, str) and text.strip() else None))
    return out


class Pipeline:
    """One ``add(..., infer=True)``: built per call, holds nothing between calls.

    Args:
        llm: the configured LLM.
        store: the vector store.
        embed: ``async (texts) -> (n, dims) float32``, the engine's document embedding.
        scope: where the memories go.
        metadata: the call's metadata (merged into every memory it writes).
        now: the time of this add (aware UTC).
    """

    def __init__(
        self,
        llm: Any,
        store: Any,
        embed: Callable[[Sequence[str]], Awaitable[np.ndarray]],
        scope: Scope,
        metadata: dict[str, Any],
        now: datetime,
        timeout: float,
    ) -> None:
        self.llm, self.store, self.embed = llm, store, embed
        self.scope, self.metadata, self.now, self.timeout = scope, metadata, now, timeout
        self.archive = "archive" in getattr(store, "capabilities", ())

    async def _ask(self, task: str, system: str, user: str, **options: Any) -> LLMResponse:
        """One LLM call under the pipeline's timeout; ``task`` names it in telemetry (``engram.llm.task``)."""
        with anyio.fail_after(self.timeout), llm_task(task):
            return await self.llm.generate(
                [{"role": "system", "content": system}, {"role": "user", "content": user}], **options
            )

    def _item(self, text: str, vec: Any, extra: Mapping[str, Any], actor: str | None = None) -> MemoryItem:
        s = self.scope
        return MemoryItem(
            id=str(uuid.uuid4()), memory=text, hash=content_hash(text), user_id=s.user_id, agent_id=s.agent_id,
            run_id=s.run_id, metadata={**self.metadata, **extra}, created_at=self.now, embedding=vec,
        )

    def _event(self, event: Event, mid: str, old: str | None, new: str | None, **kw: Any) -> HistoryEvent:
        s = self.scope
        return HistoryEvent(
            id=str(uuid.uuid4()), memory_id=mid, event=event, old_memory=old, new_memory=new, user_id=s.user_id,
            agent_id=s.agent_id, run_id=s.run_id, created_at=self.now, **kw,
        )

    # -- facts -----------------------------------------------------------------------------------

    async def extract(self, messages: Sequence[Message], out: InferOutcome) -> list[Fact] | None:
        """The facts in the messages, or ``None`` when the LLM failed or its reply is unusable."""
        agent = self.scope.agent_id is not None and self.scope.user_id is None
        prompt = EXTRACT_AGENT_V1 if agent else EXTRACT_USER_V1
        try:
            reply = await self._ask(
                "extract_facts", prompt, conversation_text(messages, self.now), response_format=JSON_OBJECT
            )
        except (EngramError, TimeoutError) as exc:
            out.fallback = f"fact extraction failed ({type(exc).__name__}: {exc}); messages stored verbatim"
            return None
        facts = parse_facts(parse_json_object(reply))
        if facts is None:
            out.fallback = "fact extraction reply was not {\"facts\": [...]}; messages stored verbatim"
            return None
        return facts

    async def related(self, vectors: np.ndarray) -> list[MemoryItem]:
        """The scope's stored memories nearest to the facts (dense, a few per fact), best first."""
        found: dict[str, tuple[float, MemoryItem]] = {}

        async def one(vec: Any) -> None:
            hits = await self.store.search(VectorQuery(self.scope, vec, None, None, RELATED_PER_FACT, "dense"))
            for h in hits:
                if h.item.id not in found or found[h.item.id][0] < h.score:
                    found[h.item.id] = (h.score, h.item)

        async with anyio.create_task_group() as tg:
            for vec in vectors:
                tg.start_soon(one, vec)
        ranked = sorted(found.values(), key=lambda p: -p[0])
        return [item for _, item in ranked[:MAX_RELATED]]

    async def decide(self, facts: Sequence[Fact], stored: Sequence[MemoryItem], out: InferOutcome) -> list[Action]:
        """The LLM's actions; with no stored memory, or when its reply is unusable, every fact is added."""
        add_all = [Action(i, Event.ADD, None, None) for i in range(len(facts))]
        if not stored:
            return add_all
        payload = {
            "stored": [{"id": i, "text": m.memory} for i, m in enumerate(stored)],
            "new_facts": [{"fact": i, "text": f.text} for i, f in enumerate(facts)],
        }
        try:
            reply = await self._ask(
                "decide", DECIDE_V1, json.dumps(payload, ensure_ascii=False), response_format=JSON_OBJECT
            )
        except (EngramError, TimeoutError) as exc:
            out.problems.append(f"decision failed ({type(exc).__name__}: {exc}); every fact added")
            return add_all
        actions = parse_actions(parse_json_object(reply), len(facts), len(stored), out.problems)
        if actions is None:
            out.problems.append("decision reply was not {\"actions\": [...]}; every fact added")
            return add_all
        covered = {a.fact for a in actions}
        for i in range(len(facts)):
            if i not in covered:
                out.problems.append(f"decision: no action for fact {i}; added")
                actions.append(Action(i, Event.ADD, None, None))
        return actions

    # -- the whole add -----------------------------------------------------------------------------

    async def run(self, messages: Sequence[Message], actor: str | None, role: str | None) -> InferOutcome:
        """Extract, decide and build the batch. ``out.fallback`` set with an empty batch means the
        caller stores the messages verbatim."""
        out = InferOutcome()
        facts = await self.extract(messages, out)
        if facts is None:
            return out
        seen: set[str] = set()
        unique = []
        for f in facts:  # exact duplicates inside one reply
            h = content_hash(f.text)
            if h not in seen:
                seen.add(h)
                unique.append(f)
        facts = unique
        out.facts = len(facts)
        if not facts:
            return out
        vectors = await self.embed([f.text for f in facts])
        stored = await self.related(vectors)
        actions = await self.decide(facts, stored, out)
        await self._apply(facts, vectors, stored, actions, out, actor, role)
        return out

    async def _apply(
        self,
        facts: Sequence[Fact],
        vectors: np.ndarray,
        stored: Sequence[MemoryItem],
        actions: Sequence[Action],
        out: InferOutcome,
        actor: str | None,
        role: str | None,
    ) -> None:
        # Texts to store that are not a fact's own text need an embedding: one more batch.
        want: list[tuple[Action, str]] = []
        for a in actions:
            if a.event in (Event.ADD, Event.UPDATE):
                want.append((a, a.text or facts[a.fact].text))
        extra_texts = sorted({t for a, t in want if t != facts[a.fact].text})
        extra_vecs = dict(zip(extra_texts, await self.embed(extra_texts), strict=True)) if extra_texts else {}

        def vec_for(a: Action, text: str) -> Any:
            return vectors[a.fact] if text == facts[a.fact].text else extra_vecs[text]

        # Exact duplicates of what the scope already holds are dropped by content hash.
        hashes = sorted({content_hash(t) for _, t in want})
        existing = set()
        if hashes:
            from ._filters import parse_filters

            # The scope is applied inside the store (the SQLite store answers it from its hash index).
            held = await self.store.list(self.scope, filters=parse_filters({"hash": {"in": hashes}}), limit=None)
            existing = {m.hash for m in held}
        touched: set[int] = set()
        batch = out.batch
        for a in actions:
            fact = facts[a.fact]
            extra = {"memory_type": fact.type, "category": fact.category}
            if a.event == Event.NONE:
                out.unchanged += 1
                continue
            if a.event == Event.DELETE:
                assert a.id is not None
                if a.id in touched:
                    out.problems.append(f"decision: memory {a.id} changed twice; kept the first change")
                    continue
                touched.add(a.id)
                old = stored[a.id]
                self._remove(old, batch)
                batch.events.append(self._event(Event.DELETE, old.id, old.memory, None, actor_id=actor, role=role,
                                                metadata={"source": "infer", "fact": fact.text}))
                out.results.append({"id": old.id, "memory": old.memory, "event": "DELETE"})
                continue
            text = a.text or fact.text
            h = content_hash(text)
            if h in existing:
                out.unchanged += 1
                continue  # already stored word for word: NONE
            existing.add(h)
            if a.event == Event.UPDATE:
                assert a.id is not None
                if a.id in touched:
                    out.problems.append(f"decision: memory {a.id} changed twice; kept the first change")
                    continue
                touched.add(a.id)
                old = stored[a.id]
                new = MemoryItem(
                    id=old.id, memory=text, hash=h, user_id=old.user_id, agent_id=old.agent_id, run_id=old.run_id,
                    metadata={**old.metadata, **self.metadata, **extra}, created_at=old.created_at,
                    updated_at=self.now, embedding=vec_for(a, text),
                )
                if self.archive:
                    batch.archive.append((old.id, "superseded"))
                batch.upserts.append(new)
                batch.events.append(self._event(Event.UPDATE, old.id, old.memory, text, actor_id=actor, role=role,
                                                metadata={"source": "infer"}))
                out.results.append({"id": old.id, "memory": text, "event": "UPDATE", "previous_memory": old.memory})
            else:
                item = self._item(text, vec_for(a, text), extra)
                batch.upserts.append(item)
                batch.events.append(self._event(Event.ADD, item.id, None, text, actor_id=actor, role=role,
                                                metadata={"source": "infer"}))
                out.results.append({"id": item.id, "memory": text, "event": "ADD"})

    def _remove(self, old: MemoryItem, batch: WriteBatch) -> None:
        if self.archive:
            batch.archive.append((old.id, "deleted"))
        else:
            batch.deletes.append(old.id)

    async def procedural(self, messages: Sequence[Message], out: InferOutcome) -> str | None:
        """One procedural summary of an agent's run, or ``None`` when the LLM failed."""
        try:
            reply = await self._ask("procedural", PROCEDURAL_V1, conversation_text(messages, self.now))
        except (EngramError, TimeoutError) as exc:
            out.fallback = f"procedural summary failed ({type(exc).__name__}: {exc}); messages stored verbatim"
            return None
        text = reply.text.strip() if isinstance(reply.text, str) else ""
        if not text:
            out.fallback = "procedural summary was empty; messages stored verbatim"
            return None
        return text
