"""How a memory is laid out in a Chroma record.

One memory is one record: its id is the memory's id, its embedding the memory's embedding, and
its metadata holds

- ``e:item``: the memory as JSON (text, hash, scope, metadata, times in epoch microseconds), from
  which reads rebuild it exactly (``True`` stays ``True``, ``1.0`` stays a float, nested values, null);
- ``e:vh``: a BLAKE2b-64 hex of the embedding's float32 bytes, so that a write can tell an
  unchanged embedding and leave Chroma's vector index alone (rewriting a vector is its slow path);
- typed projections the ``where`` filters run on (:mod:`._filters`):

  - built-in fields: ``b:id``, ``b:hash`` (strings), ``b:memory`` (SHA-256 hex of the text, so
    equality on the text compares digests), ``b:user_id`` / ``b:agent_id`` / ``b:run_id``
    (``""`` when unset: no real id is empty), ``b:created_at`` (the POSIX seconds a filter
    compares, as a float key, below), ``b:updated_at`` (as a metadata field, below);
  - each metadata key ``K`` under a token: ``k:K`` when ``K`` is 1-64 ASCII letters, digits or
    ``_``, else ``x:`` and the BLAKE2b-128 hex of ``K`` (dots, spaces, other scripts), then one
    field per JSON type of the value: ``TOKEN:s`` (string), ``TOKEN:i`` (integer in signed 64
    bits), ``TOKEN:f`` (a float as its float key, below; an integer beyond 64 bits that a float
    holds exactly goes here too), ``TOKEN:b`` (bool), and for a list one flag ``TOKEN:e:CODE = True`` per distinct number
    or bool element (:func:`element_code`); ``TOKEN:t`` names the kind (``s i f b l o``; absent
    for null or a missing key).

Floats are stored and compared as *float keys*: the 64-bit integer that orders like the float
(:func:`float_key`). Chroma 1.5.9's float comparisons can be one unit in the last place off
(``{"x": {"$gt": 123456789.125}}`` misses ``123456789.12500001``), while it compares 64-bit
integers exactly.

List elements are flags rather than Chroma 1.5 array metadata because Chroma 1.5.9 leaves a
deleted collection's array values behind, keyed by internal row ids that later records reuse:
those records then show, and match ``$contains`` on, arrays they never had (seen with the
embedded and the server engine; chroma-core/chroma#7594). Scalar metadata is cleaned up properly.

The record has no Chroma document: nothing here uses Chroma's full-text index (substring filters
are refused, and Chroma has no BM25 outside its cloud), keeping one costs write time, and a record
without a document gives Chroma nothing it could ever pass to an embedding function.

Chroma's ``$ne`` and ``$nin`` match records that lack the key (checked for
the embedded and the server engine), which makes them the exact negations engram's filters need;
the kind marker says positively which type a key holds, for the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from engram.core import MemoryItem
from engram.core.errors import InvalidInputError, ProviderError

__all__ = [
    "FORMAT",
    "INT64_MAX",
    "INT64_MIN",
    "ITEM_KEY",
    "SCOPE_KEYS",
    "TEXT_KEY",
    "VECTOR_KEY",
    "as_exact_float",
    "decode",
    "element_code",
    "embedding_matrix",
    "encode",
    "float_key",
    "key_token",
    "text_digest",
    "vector_digest",
]

FORMAT = 1
ITEM_KEY = "e:item"
VECTOR_KEY = "e:vh"
TEXT_KEY = "b:memory"
SCOPE_KEYS = {"user_id": "b:user_id", "agent_id": "b:agent_id", "run_id": "b:run_id"}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_PLAIN = re.compile(r"[A-Za-z0-9_]{1,64}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def key_token(key: str) -> str:
    """The prefix of a metadata key's projections: ``k:key`` or ``x:<blake2b-128 hex>``."""
    if _PLAIN.fullmatch(key):
        return f"k:{key}"
    return "x:" + hashlib.blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def text_digest(text: str) -> str:
    """SHA-256 hex of the UTF-8 text: what ``b:memory`` holds."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def vector_digest(vector: np.ndarray) -> str:
    """BLAKE2b-64 hex of a float32 vector's bytes: what ``e:vh`` holds."""
    return hashlib.blake2b(np.ascontiguousarray(vector, dtype=np.float32).tobytes(), digest_size=8).hexdigest()


def float_key(x: float) -> int:
    """The signed 64-bit integer that orders like the finite float ``x`` (``float_key(a) <
    float_key(b)`` exactly when ``a < b``; ``0.0`` and ``-0.0`` share one key): the IEEE 754
    bits read as an integer, with the magnitude bits of a negative number negated."""
    bits = struct.unpack("<q", struct.pack("<d", x + 0.0))[0]  # + 0.0 turns -0.0 into 0.0
    return bits if bits >= 0 else -(bits & 0x7FFF_FFFF_FFFF_FFFF) - 1


def as_exact_float(value: int | float) -> float | None:
    """``value`` as a float when a float equals it exactly, else ``None``."""
    if isinstance(value, float):
        return value
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if f == value else None


def _utc(value: Any, where: str) -> datetime:
    """An aware datetime (a naive one is taken as UTC, as :func:`engram.core.parse_time` does)."""
    if not isinstance(value, datetime):
        raise InvalidInputError(f"{where} must be a datetime, got {type(value).__name__}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _micros(dt: datetime) -> int:
    return (dt - _EPOCH) // _MICRO


def _from_micros(m: int) -> datetime:
    return _EPOCH + m * _MICRO


def element_code(value: Any) -> str | None:
    """The code of a list element a ``contains`` filter can look for: ``b1``/``b0`` for a bool,
    ``i<n>`` for an integer in 64 bits, ``f<float.hex()>`` for a float (and an integer a float
    holds exactly); ``None`` for strings (``contains`` with a string is refused), nulls, nested
    values and integers no filter value can equal."""
    if isinstance(value, bool):
        return "b1" if value else "b0"
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return f"i{value}"
    if isinstance(value, int | float) and (f := as_exact_float(value)) is not None:
        return "f" + (f + 0.0).hex()  # + 0.0 turns -0.0 into 0.0: they are equal
    return None


def _project(token: str, value: Any, where: str, out: dict[str, Any]) -> None:
    """Add the typed projections of one metadata value under ``token`` to ``out``."""
    if value is None:
        return
    if isinstance(value, bool):
        out[f"{token}:b"], out[f"{token}:t"] = value, "b"
    elif isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            out[f"{token}:i"], out[f"{token}:t"] = value, "i"
        elif (f := as_exact_float(value)) is not None:
            out[f"{token}:f"], out[f"{token}:t"] = float_key(f), "f"
        else:
            raise InvalidInputError(
                f"{where}: integer {value} is outside the signed 64-bit range Chroma indexes and no float "
                "equals it; store it as a float or a string"
            )
    elif isinstance(value, float):
        out[f"{token}:f"], out[f"{token}:t"] = float_key(value), "f"
    elif isinstance(value, str):
        out[f"{token}:s"], out[f"{token}:t"] = value, "s"
    elif isinstance(value, list | tuple):
        out[f"{token}:t"] = "l"
        for x in value:
            if (code := element_code(x)) is not None:
                out[f"{token}:e:{code}"] = True
    else:  # a mapping (JSON object): only its presence matters to a filter
        out[f"{token}:t"] = "o"


def encode(item: MemoryItem, vector: np.ndarray) -> dict[str, Any]:
    """The record's metadata for one memory (``vector``: its validated embedding).

    Raises:
        InvalidInputError: a text, hash or scope id that is not a string (or an empty id), a time
            that is not a datetime, metadata that is not a JSON object with string keys, holds NaN
            or infinity, or an integer beyond 64 bits that no float equals.
    """
    where = f"memory {item.id}"
    if not isinstance(item.metadata, dict) or not all(isinstance(k, str) for k in item.metadata):
        raise InvalidInputError(f"{where}: metadata must be a mapping with string keys")
    if not isinstance(item.memory, str) or not isinstance(item.hash, str):
        raise InvalidInputError(f"{where}: memory and hash must be strings")
    for name in SCOPE_KEYS:
        value = getattr(item, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidInputError(f"{where}: {name} must be None or a non-empty string, got {value!r}")
    created, updated = _utc(item.created_at, f"{where}: created_at"), None
    if item.updated_at is not None:
        updated = _utc(item.updated_at, f"{where}: updated_at")
    try:
        blob = json.dumps(
            {
                "v": FORMAT, "memory": item.memory, "hash": item.hash, "user_id": item.user_id, "agent_id": item.agent_id,
                "run_id": item.run_id, "metadata": item.metadata, "created_at": _micros(created),
                "updated_at": None if updated is None else _micros(updated),
            },
            ensure_ascii=False, allow_nan=False, separators=(",", ":"),
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}: metadata is not JSON (finite numbers only): {exc}") from None
    meta: dict[str, Any] = {
        ITEM_KEY: blob,
        VECTOR_KEY: vector_digest(vector),
        "b:id": item.id,
        TEXT_KEY: text_digest(item.memory),
        "b:hash": item.hash,
        "b:created_at": float_key(created.timestamp()),
    }
    for name, key in SCOPE_KEYS.items():
        meta[key] = getattr(item, name) or ""
    if updated is not None:
        _project("b:updated_at", updated.timestamp(), where, meta)
    for key, value in item.metadata.items():
        _project(key_token(key), value, f"{where}, metadata {key!r}", meta)
    return meta


def decode(record_id: str, metadata: dict[str, Any] | None, collection: str) -> MemoryItem:
    """Rebuild a memory from its record.

    Raises:
        ProviderError: the record was not written by engram.
    """
    blob = (metadata or {}).get(ITEM_KEY)
    try:
        data = json.loads(blob) if isinstance(blob, str) else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("v") != FORMAT:
        raise ProviderError(
            f"record {record_id!r} in Chroma collection {collection!r} was not written by engram "
            f"(no {ITEM_KEY!r} metadata of format {FORMAT})",
            provider="chroma",
        )
    updated = data.get("updated_at")
    return MemoryItem(
        id=record_id, memory=data["memory"], hash=data["hash"], user_id=data.get("user_id"),
        agent_id=data.get("agent_id"), run_id=data.get("run_id"), metadata=data.get("metadata") or {},
        created_at=_from_micros(data["created_at"]), updated_at=None if updated is None else _from_micros(updated),
    )


def embedding_matrix(items: list[MemoryItem], dims: int | None) -> tuple[np.ndarray, int | None]:
    """``(n, dims)`` float32 of the upserts' embeddings, validated: each one ``(dims,)``, finite,
    all of one length (and of ``dims`` when the store already has one).

    Raises:
        InvalidInputError: a missing, flat, wrong-length or non-finite embedding.
    """
    if not items:
        return np.zeros((0, dims or 0), dtype=np.float32), dims
    want = dims
    rows = []
    for it in items:
        e = it.embedding
        if e is None or np.ndim(e) != 1:
            raise InvalidInputError(f"memory {it.id}: an upsert needs a (dims,) embedding")
        v = np.asarray(e, dtype=np.float32)
        if want is None:
            want = int(v.shape[0])
        if v.shape[0] != want:
            held = "this store holds" if dims is not None else "the batch's first has"
            raise InvalidInputError(
                f"memory {it.id}: embedding has {v.shape[0]} dims, {held} {want}; use the embedder the "
                "collection was built with, or another collection"
            )
        if want == 0:
            raise InvalidInputError(f"memory {it.id}: the embedding is empty")
        if not np.isfinite(v).all():
            raise InvalidInputError(f"memory {it.id}: embedding has NaN or infinite values")
        rows.append(v)
    return np.stack(rows), want
