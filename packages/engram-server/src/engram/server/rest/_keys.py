"""API keys: a JSON file of key hashes, each key admin (unscoped) or scoped to a user/agent/run.

The file (``engram serve key add`` writes it)::

    {"version": 1, "keys": [
        {"id": "k3f9a1c2e", "hash": "sha256:<64 hex>", "user_id": "alice", "agent_id": null,
         "run_id": null, "label": "alice's laptop", "created_at": "2025-01-01T00:00:00+00:00"}
    ]}

A key is ``"ek_" + secrets.token_urlsafe(32)``: 256 random bits. Only its SHA-256 is stored. A
slow password hash (bcrypt, scrypt, Argon2) exists to make guessing a *low-entropy* secret from
its hash expensive; a 256-bit random key cannot be guessed from its SHA-256 at any cost, so a slow
hash would add only latency to every request. Presented keys are hashed and compared with every
stored hash by :func:`hmac.compare_digest` (no early exit), so the time taken does not depend on
which key, if any, matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engram.core import Scope
from engram.core.errors import ConfigurationError, InvalidScopeError

__all__ = ["ApiKey", "KeyStore", "hash_key", "new_key"]

log = logging.getLogger("engram.server.rest")

_PREFIX = "ek_"
_HASH_PREFIX = "sha256:"


def new_key() -> str:
    """A fresh API key: ``"ek_"`` + 43 URL-safe characters (256 random bits)."""
    return _PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The stored form of a key: ``"sha256:"`` + the hex SHA-256 of its UTF-8 bytes."""
    return _HASH_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One stored key: its id, hash, and the scope it is limited to (``None``: admin, every scope)."""

    id: str
    hash: str
    scope: Scope | None
    label: str | None = None
    created_at: str | None = None

    @property
    def admin(self) -> bool:
        return self.scope is None

    def to_json(self) -> dict[str, Any]:
        s = self.scope
        return {
            "id": self.id,
            "hash": self.hash,
            "user_id": s.user_id if s else None,
            "agent_id": s.agent_id if s else None,
            "run_id": s.run_id if s else None,
            "label": self.label,
            "created_at": self.created_at,
        }


def _parse(data: Any, source: str) -> list[ApiKey]:
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("keys"), list):
        raise ConfigurationError(
            f'{source}: not an engram keys file (expected {{"version": 1, "keys": [...]}})'
        )
    out: list[ApiKey] = []
    for i, entry in enumerate(data["keys"]):
        where = f"{source}: key {i + 1}"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where}: not an object")
        digest = entry.get("hash")
        if not (
            isinstance(digest, str)
            and digest.startswith(_HASH_PREFIX)
            and len(digest) == len(_HASH_PREFIX) + 64
        ):
            raise ConfigurationError(f"{where}: 'hash' must be 'sha256:' and 64 hex digits")
        ids = {k: entry.get(k) for k in ("user_id", "agent_id", "run_id")}
        try:
            scope = Scope(**ids) if any(v is not None for v in ids.values()) else None
        except InvalidScopeError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
        kid = entry.get("id")
        if not isinstance(kid, str) or not kid:
            raise ConfigurationError(f"{where}: 'id' must be a non-empty string")
        label, created = entry.get("label"), entry.get("created_at")
        out.append(
            ApiKey(
                kid,
                digest,
                scope,
                label if isinstance(label, str) else None,
                created if isinstance(created, str) else None,
            )
        )
    return out


class KeyStore:
    """The keys file, read when first needed and again whenever it changes on disk (so
    ``engram serve key add`` / ``remove`` take effect on a running server). A change is seen as a
    different device, inode, modification time, change time or size.

    It fails closed: if the file is deleted, becomes unreadable or malformed after a successful
    read, no key is valid (:meth:`keys` and :meth:`verify` raise) until the file is readable again;
    the problem is logged once per change.

    Args:
        path: the keys file. It need not exist yet for :meth:`add`.

    Raises:
        ConfigurationError: (from :meth:`load`, :meth:`keys` and :meth:`verify`) the file is
            missing, unreadable or malformed.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self._keys: list[ApiKey] | None = None  # None: never read successfully
        self._error: str | None = None  # why the file, changed since, cannot be used
        self._stamp: tuple[int, ...] | None = None
        self._lock = threading.Lock()

    def _read(self) -> list[ApiKey]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigurationError(f"API keys file {self.path} does not exist") from None
        except OSError as exc:
            raise ConfigurationError(f"cannot read API keys file {self.path}: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"{self.path}: not valid JSON: {exc}") from None
        return _parse(data, str(self.path))

    def _stat(self) -> tuple[int, ...] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)

    def _current(self) -> list[ApiKey]:
        if self._error is not None:
            raise ConfigurationError(self._error)
        assert self._keys is not None
        return self._keys

    def keys(self) -> list[ApiKey]:
        """The keys in force, re-read when the file changed since the last read.

        Raises:
            ConfigurationError: the file is missing, unreadable or malformed (now, or since it
                last changed).
        """
        stamp = self._stat()
        if self._keys is not None and stamp == self._stamp:
            return self._current()
        with self._lock:
            if self._keys is None or stamp != self._stamp:
                try:
                    keys = self._read()
                except ConfigurationError as exc:
                    if self._keys is None:
                        raise
                    log.error("API keys file changed and cannot be used; every API key is refused: %s", exc)
                    self._keys, self._error, self._stamp = [], str(exc), stamp
                else:
                    self._keys, self._error, self._stamp = keys, None, stamp
            return self._current()

    def load(self) -> list[ApiKey]:
        """Read the file now (raises on a missing or malformed file)."""
        self._keys = None
        return self.keys()

    def verify(self, presented: str) -> ApiKey | None:
        """The stored key matching ``presented``, or ``None``. Compares with every stored hash.

        Raises:
            ConfigurationError: the keys file cannot be used (see :meth:`keys`).
        """
        digest = hash_key(presented).encode("ascii")
        found: ApiKey | None = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.hash.encode("ascii")) and found is None:
                found = key
        return found

    # -- management (the CLI) -----------------------------------------------------------------

    def _existing(self) -> list[ApiKey]:
        return self._read() if self.path.exists() else []

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.unlink(missing_ok=True)  # a leftover temporary file keeps its mode (and may be a link)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"version": 1, "keys": [k.to_json() for k in keys]}, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.path)
        self._keys = None

    def add(self, scope: Scope | None, *, label: str | None = None) -> tuple[str, ApiKey]:
        """Create a key, store its hash, and return ``(the key, its record)``: the key itself is
        never stored and cannot be shown again.

        Raises:
            ConfigurationError: the existing file is malformed.
        """
        keys = self._existing()
        taken = {k.id for k in keys}
        kid = "k" + secrets.token_hex(4)
        while kid in taken:
            kid = "k" + secrets.token_hex(4)
        key = new_key()
        record = ApiKey(kid, hash_key(key), scope, label, datetime.now(UTC).isoformat(timespec="seconds"))
        self._write([*keys, record])
        return key, record

    def remove(self, key_id: str) -> bool:
        """Delete the key with this id; ``False`` when there was none."""
        keys = self._existing()
        kept = [k for k in keys if k.id != key_id]
        if len(kept) == len(keys):
            return False
        self._write(kept)
        return True
