"""Readable text for each tool's result: what an agent (or a person reading the transcript) sees
beside the structured content. Plain text, one line per memory, ids kept so the agent can act on them."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from engram.core import Scope

__all__ = [
    "add_text",
    "delete_text",
    "get_text",
    "graph_text",
    "history_text",
    "list_text",
    "reset_text",
    "scope_label",
    "search_text",
    "update_text",
]


def scope_label(scope: Scope | None) -> str:
    """``user 'maya', agent 'coder'``; ``every scope`` for ``None``."""
    if scope is None:
        return "every scope"
    return ", ".join(f"{name.removesuffix('_id')} {value!r}" for name, value in scope.items())


_PLURALS = {"memory": "memories", "change": "changes", "entity": "entities", "relation": "relations"}


def _plural(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else _PLURALS[word]}"


def _memory_line(m: Mapping[str, Any], *, score: bool = False) -> str:
    tags = [f"id {m['id']}"]
    if score and m.get("score") is not None:
        tags.append(f"score {m['score']:.3f}")
    if m.get("archived"):
        tags.append(f"archived: {m.get('archive_reason') or 'yes'}")
    when = m.get("metadata", {}).get("message_time")
    if when:
        tags.append(f"said {when}")
    return f"- {m['memory']}  [{'; '.join(tags)}]"


def _relation_line(r: Mapping[str, Any]) -> str:
    line = f"- {r['source']} -{r['relationship']}-> {r['destination']}"
    times = [f"{k.removesuffix('_at')} {r[k]}" for k in ("valid_at", "invalid_at", "expired_at") if r.get(k)]
    return line + (f"  [{'; '.join(times)}]" if times else "")


def add_text(result: Mapping[str, Any], scope: Scope) -> str:
    changes = result["results"]
    who = scope_label(scope)
    if not changes:
        lines = [f"Nothing new stored for {who} (already known, or nothing worth remembering)."]
    else:
        lines = [f"Memory of {who} changed ({_plural(len(changes), 'change')}):"]
        for c in changes:
            was = f" (was: {c['previous_memory']})" if c.get("previous_memory") else ""
            lines.append(f"- {c['event']}: {c['memory']}{was}  [id {c['id']}]")
    fallback = (result.get("infer") or {}).get("fallback")
    if fallback:
        lines.append(f"Stored as written: {fallback}")
    rel = result.get("relations") or {}
    for key, title in (("added", "Relations added"), ("closed", "Relations closed (no longer true)")):
        if rel.get(key):
            lines.append(f"{title}:")
            lines.extend(_relation_line(r) for r in rel[key])
    return "\n".join(lines)


def search_text(result: Mapping[str, Any], scope: Scope, query: str) -> str:
    hits = result["results"]
    who = scope_label(scope)
    if not hits:
        lines = [f"No memories of {who} match {query!r}."]
    else:
        lines = [f"{_plural(len(hits), 'memory')} of {who} for {query!r}, best first:"]
        lines.extend(_memory_line(h, score=True) for h in hits)
    if result.get("relations"):
        lines.append("Related facts from the graph:")
        lines.extend(_relation_line(r) for r in result["relations"])
    for path, why in (result.get("missing") or {}).items():
        lines.append(f"(the {path} recall path is missing: {why})")
    return "\n".join(lines)


def list_text(result: Mapping[str, Any], scope: Scope) -> str:
    rows = result["results"]
    who = scope_label(scope)
    if not rows:
        return f"No memories of {who}."
    return "\n".join([f"{_plural(len(rows), 'memory')} of {who}, newest first:", *map(_memory_line, rows)])


def get_text(memory: Mapping[str, Any]) -> str:
    scope = ", ".join(f"{k}={memory[k]!r}" for k in ("user_id", "agent_id", "run_id") if memory.get(k))
    lines = [
        memory["memory"],
        f"id: {memory['id']}",
        f"scope: {scope}",
        f"created: {memory['created_at']}"
        + (f", updated: {memory['updated_at']}" if memory.get("updated_at") else ""),
    ]
    if memory.get("metadata"):
        lines.append(f"metadata: {json.dumps(memory['metadata'], ensure_ascii=False, sort_keys=True)}")
    return "\n".join(lines)


def update_text(result: Mapping[str, Any]) -> str:
    return f"Updated memory {result['id']}.\nwas: {result['previous_memory']}\nnow: {result['memory']}"


def delete_text(result: Mapping[str, Any]) -> str:
    return f"Deleted memory {result['id']} (its history is kept)."


def history_text(memory_id: str, events: Sequence[Mapping[str, Any]]) -> str:
    if not events:
        return f"No history for memory {memory_id}."
    lines = [f"History of memory {memory_id}, oldest first:"]
    for e in events:
        if e["event"] == "UPDATE":
            what = f"{e.get('old_memory')} -> {e.get('new_memory')}"
        elif e["event"] == "DELETE":
            what = str(e.get("old_memory"))
        else:
            what = str(e.get("new_memory"))
        lines.append(f"- {e['created_at']} {e['event']}: {what}")
    return "\n".join(lines)


def graph_text(result: Mapping[str, Any], scope: Scope) -> str:
    who = scope_label(scope)
    ents, rels = result["entities"], result["relations"]
    if not ents and not rels:
        return f"No graph for {who}. (add_memory fills it when the server has an LLM and a graph store configured.)"
    lines = [f"Graph of {who}: {_plural(len(ents), 'entity')}, {_plural(len(rels), 'relation')}."]
    if ents:
        lines.append("Entities: " + ", ".join(f"{e['name']} ({e.get('type') or '?'})" for e in ents))
    if rels:
        lines.append("Relations, newest first:")
        lines.extend(_relation_line(r) for r in rels)
    return "\n".join(lines)


def reset_text(result: Mapping[str, Any]) -> str:
    return str(result["message"])
