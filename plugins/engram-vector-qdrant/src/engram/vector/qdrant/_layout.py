"""How a memory is laid out in a Qdrant point, and back.

A point holds one version of one memory:

- id: ``uuid5(NAMESPACE, memory id)`` for the active version (any string id maps to one UUID),
  a random UUID for an archived version;
- vectors: ``"dense"`` (the embedding; cosine) and ``"bm25"`` (sparse term weights, see
  :mod:`._lexical`);
- payload::

    id, memory, hash                  the memory's own fields (strings)
    user_id, agent_id, run_id         left out when None
    metadata                          the metadata as a JSON string (returned exactly as given)
    created_at, updated_at            RFC 3339 UTC to the microsecond; updated_at left out when None
    archived                          false on the active version, true on archived ones
    archived_at, archive_reason       on archived versions only
    keys                              the field names (below) of metadata keys with a non-null value
    f                                 {field name: typed projections of that key's value}

A Qdrant server does not keep every float exactly: it stores payloads as JSON and reads them back
with a parser that can land one unit in the last place away (about one random double in six,
measured on 1.16.3, over REST and gRPC alike). So no float is stored for filtering or returned:
the metadata goes in as a JSON string, times as text, and numbers as integers, which it keeps
exactly.

Filters run on the projections under ``f``, never on ``metadata``. A metadata key's field name is
the key itself when it is a plain identifier (``[A-Za-z][A-Za-z0-9_]{0,63}``), else ``"_"`` and 24
hex digits of its BLAKE2b hash (keys with dots, spaces or non-ASCII letters are then one field
each, never a path). The projections of a value ``v`` (each only where it applies):

=========  ==============================================================================
``s``      ``v`` when a string
``b``      ``v`` when a boolean
``i``      ``v`` as an integer when it is one exactly: an int, or a float with an integral
           value in the signed 64-bit range (so ``1`` and ``1.0`` match alike)
``kh kl``  the order key of ``float(v)`` for any number (not a boolean): the 64 bits of the
           double mapped so that integer order is numeric order, in two 32-bit halves
``hi lo``  ``i >> 32`` and ``i & 0xFFFFFFFF`` when ``|i| >= 2**53``, where ``float(v)`` rounds:
           ranges decide values that tie with the operand as floats by these
``ls``     the string elements of a list
``lb``     the boolean elements of a list
``li``     the elements of a list that have an ``i`` (as above)
``lk``     the order keys (as signed 64-bit integers) of the other number elements of a list
=========  ==============================================================================
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
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
    "float_key",
    "from_iso",
    "iso",
    "item_from_payload",
    "metadata_projections",
    "payload_of",
    "point_id",
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
    "created_at": "datetime",
    "updated_at": "datetime",
    "archived_at": "datetime",
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


def float_key(x: float) -> int:
    """An unsigned 64-bit integer whose order is the order of the finite doubles (``-0.0`` and
    ``0.0`` share one key): the sign bit set for positives, every bit flipped for negatives."""
    u = struct.unpack(">Q", struct.pack(">d", x + 0.0))[0]  # + 0.0 turns -0.0 into 0.0
    return u ^ 0xFFFFFFFFFFFFFFFF if u >> 63 else u | (1 << 63)


def iso(t: datetime) -> str:
    """RFC 3339 in UTC with microseconds (a naive datetime is taken as UTC)."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.isoformat(timespec="microseconds")


def from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _scalar(v: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(v, bool):
        out["b"] = v
    elif isinstance(v, str):
        out["s"] = v
    elif isinstance(v, int | float):
        key = float_key(float(v))
        out["kh"], out["kl"] = key >> 32, key & 0xFFFFFFFF
        i = exact_int(v)
        if i is not None:
            out["i"] = i
            if abs(i) >= BIG:
                out["hi"], out["lo"] = i >> 32, i & 0xFFFFFFFF
    return out


def _elements(values: list[Any]) -> dict[str, Any]:
    out: dict[str, list[Any]] = {"ls": [], "lb": [], "li": [], "lk": []}
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
                out["lk"].append(float_key(float(x)) - 2**63)
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
            raise InvalidInputError(
                f"{where}: integer {value} is outside the signed 64-bit range; use a float"
            )
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
    text = json.dumps(item.metadata, ensure_ascii=False, allow_nan=False)
    keys, f = metadata_projections(json.loads(text))  # lists for tuples
    payload: dict[str, Any] = {
        "id": item.id,
        "memory": item.memory,
        "hash": item.hash,
        "metadata": text,
        "created_at": iso(item.created_at),
        "archived": False,
        "keys": keys,
        "f": f,
    }
    for name in ("user_id", "agent_id", "run_id"):
        if (v := getattr(item, name)) is not None:
            payload[name] = v
    if item.updated_at is not None:
        payload["updated_at"] = iso(item.updated_at)
    return payload


def item_from_payload(payload: Mapping[str, Any]) -> MemoryItem:
    """The :class:`~engram.core.MemoryItem` a point's payload holds (no embedding)."""
    return MemoryItem(
        id=payload["id"],
        memory=payload["memory"],
        hash=payload["hash"],
        user_id=payload.get("user_id"),
        agent_id=payload.get("agent_id"),
        run_id=payload.get("run_id"),
        metadata=json.loads(payload.get("metadata") or "{}"),
        created_at=from_iso(payload["created_at"]),  # type: ignore[arg-type]
        updated_at=from_iso(payload.get("updated_at")),
        archived_at=from_iso(payload.get("archived_at")),
        archive_reason=payload.get("archive_reason"),
    )
