"""The file formats ``engram import`` reads and ``engram export`` writes.

Two formats:

- **JSON lines** (``jsonl``), engram's own: one memory per line, the shape :meth:`MemoryItem.to_dict`
  gives (``id``, ``memory``, ``hash``, ``user_id``, ``agent_id``, ``run_id``, ``metadata``,
  ``created_at``, ``updated_at``). ``engram export`` writes it and ``engram import`` reads it back
  losslessly. Only ``memory`` (or ``text``) is required on import: a missing id is generated, a
  missing hash computed, a missing ``created_at`` set to now, and a line without a scope takes the
  scope given on the command line.
- **LoCoMo** (``locomo``): the conversation format of the LoCoMo benchmark (Maharana et al., ACL 2024)
  — a sample ``{"sample_id", "conversation": {"speaker_a", "speaker_b", "session_N": [turns],
  "session_N_date_time": "1:56 pm on 8 May, 2023"}, ...}`` or a list of them. Each turn
  ``{"speaker", "dia_id", "text"[, "img_url", "blip_caption"]}`` becomes one memory stored verbatim
  (role ``user``, the speaker as its name, the session's date and time as its time) with
  ``dia_id``, ``session``, ``session_date`` and ``blip_caption`` in its metadata. The text is
  kept as said; the engine embeds and indexes it with its speaker's name (see
  :func:`engram.core.index_text`), so a question about Caroline finds what she said.

Parsing is pure: it returns :class:`ParsedRecord` values and warnings, and never touches a store.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from engram.core import MemoryItem, Scope, content_hash, parse_time, utcnow
from engram.core.errors import InvalidInputError

__all__ = [
    "Format",
    "ParsedFile",
    "ParsedRecord",
    "detect_format",
    "item_to_json",
    "normalize_evidence",
    "parse_file",
    "parse_jsonl",
    "parse_locomo",
    "parse_locomo_date",
]

Format = Literal["auto", "jsonl", "locomo"]

_MONTHS = {
    m: i
    for i, names in enumerate(
        (
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ),
        start=1,
    )
    for m in names
}
_LOCOMO_DATE = re.compile(
    r"^\s*(\d{1,2})(?::(\d{2}))?\s*([ap])\.?\s*m\.?\s+on\s+(\d{1,2})\s+([A-Za-z]+)\.?,?\s+(\d{4})\s*$",
    re.IGNORECASE,
)
_SESSION_KEY = re.compile(r"^session_(\d+)$")
_EVIDENCE = re.compile(r"^D:?(\d+):0*(\d+)$")
# LoCoMo turns get ids derived from where they sit, so importing a file twice replaces, never duplicates.
_LOCOMO_NS = uuid.UUID("6f1c2a53-3d0e-4d8e-9a57-2f0b6c1e7a41")


@dataclass(slots=True)
class ParsedRecord:
    """One memory to store, with the scope it goes to (``item`` carries the scope ids)."""

    item: MemoryItem
    group: str  # what the progress bar and the batching group by: a conversation session, a file


@dataclass(slots=True)
class ParsedFile:
    """What a file held: memories to import, in order, and warnings about what was skipped."""

    format: Literal["jsonl", "locomo"]
    records: list[ParsedRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: int = 0


def parse_locomo_date(text: str) -> datetime | None:
    """LoCoMo's session time, ``"1:56 pm on 8 May, 2023"``, as an aware UTC datetime.

    LoCoMo gives no time zone; the time is taken as UTC. Also accepts ISO 8601. Returns ``None``
    when the text is neither.
    """
    if not isinstance(text, str):
        return None
    m = _LOCOMO_DATE.match(text)
    if m:
        hour, minute, ampm, day, month, year = m.groups()
        mon = _MONTHS.get(month.lower())
        h = int(hour)
        if mon is None or not 1 <= h <= 12:
            return None
        h = h % 12 + (12 if ampm.lower() == "p" else 0)
        try:
            return datetime(int(year), mon, int(day), h, int(minute or 0), tzinfo=UTC)
        except ValueError:
            return None
    try:
        return parse_time(text)
    except ValueError:
        return None


def normalize_evidence(evidence: Any) -> list[str]:
    """LoCoMo evidence ids, cleaned: ``"D8:6; D9:17"`` -> ``["D8:6", "D9:17"]``, ``"D:11:26"`` ->
    ``["D11:26"]``, ``"D30:05"`` -> ``["D30:5"]``. Accepts a string or a list; drops what is not an id."""
    raw = [evidence] if isinstance(evidence, str) else list(evidence or [])
    out: list[str] = []
    for entry in raw:
        if not isinstance(entry, str):
            continue
        for token in re.split(r"[;,\s]+", entry.strip()):
            m = _EVIDENCE.match(token)
            if m:
                ident = f"D{int(m.group(1))}:{int(m.group(2))}"
                if ident not in out:
                    out.append(ident)
    return out


def item_to_json(item: MemoryItem) -> dict[str, Any]:
    """The export line for one memory: every field but the embedding, scope fields always present."""
    d = item.to_dict()
    for name in ("user_id", "agent_id", "run_id"):
        d.setdefault(name, None)
    order = ("id", "memory", "hash", "user_id", "agent_id", "run_id", "metadata", "created_at", "updated_at")
    return {k: d[k] for k in order}


def detect_format(text: str) -> Literal["jsonl", "locomo"]:
    """``locomo`` when the whole text is one JSON document holding a conversation, else ``jsonl``."""
    stripped = text.lstrip()
    if not stripped.startswith(("[", "{")):
        return "jsonl"
    try:
        doc = json.loads(stripped)
    except ValueError:
        return "jsonl"
    if isinstance(doc, Mapping):
        return "locomo" if isinstance(doc.get("conversation"), Mapping) else "jsonl"
    if isinstance(doc, list) and any(isinstance(s, Mapping) and "conversation" in s for s in doc):
        return "locomo"
    return "jsonl"


def parse_file(
    text: str,
    fmt: Format = "auto",
    *,
    scope: Scope | None = None,
    source: str = "input",
) -> ParsedFile:
    """Parse an import file's text.

    Args:
        text: the whole file.
        fmt: ``"jsonl"``, ``"locomo"`` or ``"auto"`` (see :func:`detect_format`).
        scope: the scope given on the command line, or ``None``.
        source: the file name, for warnings.

    Raises:
        InvalidInputError: the file is not in the format (a LoCoMo file that is not JSON, a JSON
            lines file where no line parses), or records have no scope to go to.
    """
    if fmt == "auto":
        fmt = detect_format(text)
    if fmt == "locomo":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"{source}: not a LoCoMo JSON file: {exc}") from None
        return parse_locomo(doc, scope=scope, source=source)
    if fmt == "jsonl":
        return parse_jsonl(text, scope=scope, source=source)
    raise InvalidInputError(f"unknown import format {fmt!r}; expected auto, jsonl or locomo")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield n, line


def _opt_str(d: Mapping[str, Any], key: str) -> str | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise ValueError(f"{key!r} must be a string")
    return v


def parse_jsonl(text: str, *, scope: Scope | None = None, source: str = "input") -> ParsedFile:
    """Parse engram's JSON lines (see the module docstring). Malformed lines are skipped with a warning.

    Raises:
        InvalidInputError: no line could be read while some were present.
    """
    out = ParsedFile("jsonl")
    total = 0
    for n, line in _lines(text):
        total += 1
        where = f"{source}:{n}"
        try:
            d = json.loads(line)
            if not isinstance(d, Mapping):
                raise ValueError("a line must be a JSON object")
            memory = d.get("memory", d.get("text"))
            if not isinstance(memory, str) or not memory.strip():
                raise ValueError("'memory' must be a non-empty string")
            ids = {k: _opt_str(d, k) for k in ("user_id", "agent_id", "run_id")}
            if not any(ids.values()):
                if scope is None:
                    raise ValueError("no user_id, agent_id or run_id on the line or on the command line (-u)")
                ids = {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}
            Scope(**ids)  # validates
            metadata = d.get("metadata") or {}
            if not isinstance(metadata, Mapping):
                raise ValueError("'metadata' must be an object")
            mid = _opt_str(d, "id") or str(uuid.uuid4())
            digest = content_hash(memory)
            given = _opt_str(d, "hash")
            if given is not None and given != digest:
                out.warnings.append(f"{where}: hash does not match the text; recomputed")
            created = parse_time(d["created_at"]) if d.get("created_at") else utcnow()
            updated = parse_time(d["updated_at"]) if d.get("updated_at") else None
        except (ValueError, TypeError, KeyError) as exc:
            out.warnings.append(f"{where}: skipped: {exc}")
            out.skipped += 1
            continue
        item = MemoryItem(
            id=mid,
            memory=memory,
            hash=digest,
            metadata=dict(metadata),
            created_at=created,
            updated_at=updated,
            user_id=ids["user_id"],
            agent_id=ids["agent_id"],
            run_id=ids["run_id"],
        )
        out.records.append(ParsedRecord(item, source))
    if total and not out.records:
        raise InvalidInputError(
            f"{source}: no line could be imported as engram JSON lines ({out.warnings[0] if out.warnings else ''})"
        )
    return out


def _sessions(conv: Mapping[str, Any]) -> list[tuple[int, list[Any]]]:
    found = []
    for key, value in conv.items():
        m = _SESSION_KEY.match(key)
        if m and isinstance(value, list):
            found.append((int(m.group(1)), value))
    return sorted(found, key=lambda s: s[0])


def parse_locomo(
    doc: Any, *, scope: Scope | None = None, source: str = "input"
) -> ParsedFile:
    """Turn LoCoMo samples (one mapping or a list) into memories, one per turn.

    A memory's text is the turn's text, verbatim. Each turn goes to ``scope`` when given, else to ``user_id = sample_id``. Its metadata holds
    ``role``, ``speaker``, ``message_time`` (as :meth:`AsyncMemory.add` keeps them), ``dia_id``,
    ``session`` (the session number), ``session_date`` (LoCoMo's text), ``conversation`` (the
    sample id) and, for shared images, ``blip_caption`` and ``img_url``. The memory's ``created_at``
    is the session's time plus one microsecond per turn, so listings keep the conversation's order.
    Ids are derived from the scope, the sample, the session, the turn's position and its text, so
    importing the same file again replaces the turns instead of duplicating them. Turns without a
    ``speaker`` or a ``text`` are skipped with a warning.

    Raises:
        InvalidInputError: the document holds no conversation at all.
    """
    samples = doc if isinstance(doc, list) else [doc]
    out = ParsedFile("locomo")
    now = utcnow()
    found_any = False
    order = 0
    for si, sample in enumerate(samples):
        if not isinstance(sample, Mapping) or not isinstance(sample.get("conversation"), Mapping):
            out.warnings.append(f"{source}: sample {si}: skipped: no 'conversation' object")
            out.skipped += 1
            continue
        found_any = True
        conv = sample["conversation"]
        sample_id = sample.get("sample_id")
        if not isinstance(sample_id, str) or not sample_id:
            sample_id = f"conversation-{si + 1}"
        if scope is not None:
            ids = {"user_id": scope.user_id, "agent_id": scope.agent_id, "run_id": scope.run_id}
        else:
            ids = {"user_id": sample_id, "agent_id": None, "run_id": None}
        for num, turns in _sessions(conv):
            date_text = conv.get(f"session_{num}_date_time")
            when = parse_locomo_date(date_text) if isinstance(date_text, str) else None
            if date_text is not None and when is None:
                out.warnings.append(
                    f"{source}: {sample_id} session {num}: unreadable date {date_text!r}; no time kept"
                )
            group = f"{sample_id} session {num}"
            for ti, turn in enumerate(turns):
                where = f"{source}: {sample_id} session {num} turn {ti + 1}"
                if not isinstance(turn, Mapping):
                    out.warnings.append(f"{where}: skipped: not an object")
                    out.skipped += 1
                    continue
                text, speaker = turn.get("text"), turn.get("speaker")
                if not isinstance(text, str) or not text.strip():
                    out.warnings.append(f"{where}: skipped: no 'text'")
                    out.skipped += 1
                    continue
                if not isinstance(speaker, str) or not speaker.strip():
                    out.warnings.append(f"{where}: skipped: no 'speaker'")
                    out.skipped += 1
                    continue
                meta: dict[str, Any] = {"role": "user", "speaker": speaker}
                if when is not None:
                    meta["message_time"] = when.isoformat()
                dia_id = turn.get("dia_id")
                if isinstance(dia_id, str) and dia_id:
                    meta["dia_id"] = dia_id
                meta["session"] = num
                if isinstance(date_text, str):
                    meta["session_date"] = date_text
                meta["conversation"] = sample_id
                caption = turn.get("blip_caption")
                if isinstance(caption, str) and caption.strip():
                    meta["blip_caption"] = caption
                urls = turn.get("img_url")
                if isinstance(urls, str):
                    urls = [urls]
                if isinstance(urls, list) and all(isinstance(u, str) for u in urls) and urls:
                    meta["img_url"] = list(urls)
                order += 1
                memory = text
                key = "\x1f".join(str(v) for v in (*ids.values(), sample_id, num, ti, memory))
                item = MemoryItem(
                    id=str(uuid.uuid5(_LOCOMO_NS, key)),
                    memory=memory,
                    hash=content_hash(memory),
                    metadata=meta,
                    created_at=(when or now) + timedelta(microseconds=order),
                    user_id=ids["user_id"],
                    agent_id=ids["agent_id"],
                    run_id=ids["run_id"],
                )
                out.records.append(ParsedRecord(item, group))
    if not found_any:
        raise InvalidInputError(
            f"{source}: no LoCoMo conversation found (expected objects with a 'conversation')"
        )
    return out
