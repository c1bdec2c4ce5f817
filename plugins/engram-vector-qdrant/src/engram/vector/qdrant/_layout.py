"""How a memory is laid out in a Qdrant point, and back.

A point holds one version of one memory:

- id: ``uuid5(NAMESPACE, memory id)`` for the active version (any string id maps to one UUID),
  a random UUID for an archived version;
- vectors: ``"dense"`` (the embedding; cosine) and ``"bm25"`` (sparse term weights, see
  :mod:`._lexical`);
- payload::

    id, memory, hash                  the memory's own fields (strings)
    user_id, agent_id, run_id         left out when None
    metadata                          the metadata exactly as given (returned as is)
    created_at, updated_at            POSIX seconds (float); updated_at left out when None
    archived                          false on the active version, true on archived ones
    archived_at, archive_reason       on archived versions only
    keys                              the field names (below) of metadata keys with a non-null value
    f                                 {field name: typed projections of that key's value}

Filters run on the projections under ``f``, never on ``metadata``, so that each test is exact in
Qdrant's terms. A metadata key's field name is the key itself when it is a plain identifier
(``[A-Za-z][A-Za-z0-9_]{0,63}``), else ``"_"`` and 24 hex digits of its BLAKE2b hash (keys with
dots, spaces or non-ASCII letters are then one field each, never a path). The projections of a
value ``v`` (each only where it applies):

=========  ==============================================================================
``s``      ``v`` when a string
``b``      ``v`` when a boolean
``n``      ``float(v)`` when a number (not a boolean): range filters
``i``      ``v`` as an integer when it is one exactly: an int, or a float with an integral
           value in the signed 64-bit range: equality filters
``hi lo``  ``i >> 32`` and ``i & 0xFFFFFFFF`` when ``|i| >= 2**53``: exact ranges where
           ``float`` rounds (both halves are exact as floats)
``ls``     the string elements of a list
``lb``     the boolean elements of a list
``li``     the elements of a list that have an ``i`` (as above)
``lx``     the other number elements of a list (non-integral, or beyond 64 bits)
=========  ==============================================================================
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from engram.core import MemoryItem
from engram.core.errors import InvalidInputError

__all__ = [
    "BIG",
    "INDEXES",
    "NAMESPACE",
    "exact_int",
    "field_name",
    "item_from_payload",
    "metadata_projections",
    "payload_of",
    "point_id",
    "to_seconds",
]

NAMESPACE = uuid.UUID("1f0b7c52-43a4-5f2e-9d8e-5b0c6a1d7e91")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
BIG = 2**53  # from here on, not every integer is a float
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")

#: Payload indexes a server collection gets: field -> Qdrant schema type name.
INDEXES: dict[str, str] = {
    "id": "keyword",
    "hash": "keyword",
    "user_id": "keyword",
    "agent_id": "keyword",
    "run_id": "keyword",
    "keys": "keyword",
    "archived": "bool",
    "created_at": "float",
    "updated_at": "float",
    "archived_at": "float",
}


def point_id(memory_id: str) -> str:
    """The point id of a memory's active version."""
    return str(uuid.uuid5(NAMESPACE, memory_id))


def field_name(key: str) -> str:
    """The name under ``f`` (and in ``keys``) of a metadata key."""
    if _PLAIN.fullmatch(key):
        return key
    return "_" + hashlib.blake2b(key.encode("utf-8"), digest_size=12).hexdigest()


def exact_int(v: Any) -> int | None:
    """``v`` as an int when it is an integer exactly (an int, or a float with an integral value
    in the signed 64-bit range); ``None`` otherwise, and for booleans."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer() and INT64_MIN <= v <= INT64_MAX:
        return int(v)
    return None


def to_seconds(t: datetime) -> float:
    """POSIX seconds of an aware datetime (a naive one is taken as UTC, as engram does)."""
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


def _scalar(v: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(v, bool):
        out["b"] = v
    elif isinstance(v, str):
        out["s"] = v
    elif isinstance(v, int | float):
        out["n"] = float(v)
        i = exact_int(v)
        if i is not None:
            out["i"] = i
            if abs(i) >= BIG:
                out["hi"], out["lo"] = i >> 32, i & 0xFFFFFFFF
    return out


def _elements(values: list[Any]) -> dict[str, Any]:
    out: dict[str, list[Any]] = {"ls": [], "lb": [], "li": [], "lx": []}
    for x in values:
        if isinstance(x, bool):
            out["lb"].append(x)
        elif isinstance(x, str):
            out["ls"].append(x)
        elif isinstance(x, int | float):
            i = exact_int(x)
            if i is not None:
                out["li"].append(i)
            else:
                out["lx"].append(float(x))
    return {k: v for k, v in out.items() if v}


def metadata_projections(metadata: Mapping[str, Any]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """``(keys, f)`` of the payload for this metadata (see the module docstring)."""
    keys: list[str] = []
    f: dict[str, dict[str, Any]] = {}
    for key, v in metadata.items():
        if v is None:
            continue
        name = field_name(key)
        keys.append(name)
        proj = _elements(v) if isinstance(v, list) else _scalar(v)
        if proj:
            f[name] = proj
    return keys, f


def _check_json(value: Any, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidInputError(f"{where}: integer {value} is outside the signed 64-bit range; use a float")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(f"{where}: {value!r} is not a finite number")
        return
    if isinstance(value, list | tuple):
        for x in value:
            _check_json(x, where)
        return
    if isinstance(value, Mapping):
        for k, x in value.items():
            if not isinstance(k, str):
                raise InvalidInputError(f"{where}: metadata keys must be strings, got {k!r}")
            _check_json(x, where)
        return
    raise InvalidInputError(f"{where}: {type(value).__name__} is not a JSON value")


def payload_of(item: MemoryItem) -> dict[str, Any]:
    """The payload of a memory's active version.

    Raises:
        InvalidInputError: metadata that is not JSON (a non-string key, NaN, an integer beyond 64
            bits, another type).
    """
    where = f"memory {item.id} metadata"
    if not isinstance(item.metadata, Mapping):
        raise InvalidInputError(f"{where}: expected a mapping, got {type(item.metadata).__name__}")
    _check_json(item.metadata, where)
    metadata = json.loads(json.dumps(item.metadata))  # lists for tuples, and no shared objects
    keys, f = metadata_projections(metadata)
    payload: dict[str, Any] = {
        "id": item.id,
        "memory": item.memory,
        "hash": item.hash,
        "metadata": metadata,
        "created_at": to_seconds(item.created_at),
        "archived": False,
        "keys": keys,
        "f": f,
    }
    for name in ("user_id", "agent_id", "run_id"):
        if (v := getattr(item, name)) is not None:
            payload[name] = v
    if item.updated_at is not None:
        payload["updated_at"] = to_seconds(item.updated_at)
    return payload


def _time(seconds: Any) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(float(seconds), UTC)


def item_from_payload(payload: Mapping[str, Any]) -> MemoryItem:
    """The :class:`~engram.core.MemoryItem` a point's payload holds (no embedding)."""
    return MemoryItem(
        id=payload["id"],
        memory=payload["memory"],
        hash=payload["hash"],
        user_id=payload.get("user_id"),
        agent_id=payload.get("agent_id"),
        run_id=payload.get("run_id"),
        metadata=dict(payload.get("metadata") or {}),
        created_at=_time(payload["created_at"]),  # type: ignore[arg-type]
        updated_at=_time(payload.get("updated_at")),
        archived_at=_time(payload.get("archived_at")),
        archive_reason=payload.get("archive_reason"),
    )
