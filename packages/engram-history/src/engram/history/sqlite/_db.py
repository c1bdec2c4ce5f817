from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import platformdirs
from engram.core.errors import ConfigurationError, ProviderError

T = TypeVar("T")


def default_db_path() -> Path:
    """``<user data dir>/engram/engram.db`` (e.g. ``~/.local/share/engram/engram.db`` on Linux)."""
    return Path(platformdirs.user_data_dir("engram", appauthor=False)) / "engram.db"


def path_from_url(url: str) -> str:
    """``sqlite:///relative.db``, ``sqlite:////abs/path.db``, ``sqlite:///:memory:`` -> a path string.

    Raises:
        ConfigurationError: not a ``sqlite://`` URL, or a host part given.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ConfigurationError(f"not a sqlite URL: {url!r}")
    if parts.netloc:
        raise ConfigurationError(f"sqlite URL takes no host; write sqlite:///path (got {url!r})")
    path = unquote(parts.path)
    path = path[1:] if path.startswith("/") else path
    if not path:
        raise ConfigurationError(f"sqlite URL has no path: {url!r}")
    return path


class _Job:
    __slots__ = ("after", "args", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], after: Callable[[Any], None] | None) -> None:
        self.fn, self.args, self.after = fn, args, after
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class Database:
    """One SQLite database used from worker threads.

    A file gets a small pool of connections (WAL, ``synchronous=NORMAL``, a busy timeout), at
    most ``max_connections`` in use at once, so reads run in parallel while memory stays bounded;
    writes are serialised in-process by a lock and run in ``BEGIN IMMEDIATE`` transactions that
    commit whole or roll back whole. ``:memory:`` gets a single shared connection behind the lock.

    Args:
        path: file path or ``":memory:"``; parent folders are created.
        setup: called once, on the first connection, inside a transaction (creates the schema).
        on_connect: called on every new connection (registers SQL functions).
        busy_timeout: seconds to wait for another process's write lock.
        max_connections: how many connections (and worker threads) may be in use at once.
    """

    def __init__(
        self,
        path: str | Path,
        setup: Callable[[sqlite3.Connection], None],
        *,
        on_connect: Callable[[sqlite3.Connection], None] | None = None,
        busy_timeout: float = 30.0,
        max_connections: int = 4,
    ):
        self.path = str(path)
        self.memory = self.path == ":memory:"
        self._setup = setup
        self._on_connect = on_connect
        self._busy_ms = int(busy_timeout * 1000)
        self._max = 1 if self.memory else max_connections
        self._limiter: anyio.CapacityLimiter | None = None
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # guards _idle and _closed
        self.write_lock = threading.RLock()
        self._pending_lock = threading.Lock()
        self._pending: list[_Job] = []
        self._ready = False
        self._closed = False

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise ProviderError("database is closed", provider="sqlite")
        if not self.memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=self._busy_ms / 1000)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        if not self.memory:
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -1024")  # 1 MiB per connection; the OS caches the file too
        if self._on_connect is not None:
            self._on_connect(conn)
        with self.write_lock:
            # Switching a fresh file to WAL needs an exclusive lock and does not wait on the busy
            # timeout: two connections doing it at once (concurrent first reads) fail with "database
            # is locked". The first connection switches under the write lock; for the rest the file
            # is already in WAL mode and the pragma is a no-op.
            if not self.memory:
                conn.execute("PRAGMA journal_mode = WAL")
            if not self._ready:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    self._setup(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    conn.close()
                    raise
                self._ready = True
        return conn

    def _checkout(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise ProviderError("database is closed", provider="sqlite")
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _checkin(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def run_read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a pooled connection, in the calling thread."""
        if self.memory:
            with self.write_lock:
                conn = self._checkout()
                try:
                    return fn(conn, *args)
                finally:
                    self._checkin(conn)
        conn = self._checkout()
        try:
            return fn(conn, *args)
        finally:
            self._checkin(conn)

    def run_write(self, fn: Callable[..., T], *args: Any, after: Callable[[T], None] | None = None) -> T:
        """Run ``fn(conn, *args)`` in a transaction; then, still holding the write lock, ``after(result)``
        (to update in-process caches in commit order).

        Group commit: writes that queue up while another is committing are applied together in
        the next transaction, each inside its own savepoint, so one failing write rolls back alone
        while the others commit. Every caller returns only once its own write has committed.
        """
        job = _Job(fn, args, after)
        with self._pending_lock:
            self._pending.append(job)
        with self.write_lock:
            if not job.done:
                with self._pending_lock:
                    jobs, self._pending = self._pending, []
                self._commit_group(jobs)
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def _commit_group(self, jobs: list[_Job]) -> None:
        try:
            conn = self._checkout()
        except BaseException as exc:
            for job in jobs:
                job.error, job.done = exc, True
            return
        try:
            self._commit_on(conn, jobs)
        finally:
            self._checkin(conn)

    def _commit_on(self, conn: sqlite3.Connection, jobs: list[_Job]) -> None:
        single = len(jobs) == 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                if single:
                    job.result = job.fn(conn, *job.args)
                    continue
                conn.execute("SAVEPOINT engram_job")
                try:
                    job.result = job.fn(conn, *job.args)
                except Exception as exc:
                    conn.execute("ROLLBACK TO engram_job")
                    job.error = exc
                conn.execute("RELEASE engram_job")
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in jobs:
                job.error = job.error or exc
                job.done = True
            if not isinstance(exc, Exception):
                raise
            return
        for job in jobs:
            job.done = True
            if job.error is None and job.after is not None:
                try:
                    job.after(job.result)
                except Exception as exc:  # a cache update failed: the write itself committed
                    job.error = exc

    def _get_limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:  # created on first use: it needs a running event loop
            self._limiter = anyio.CapacityLimiter(self._max)
        return self._limiter

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in a worker thread."""
        try:
            return await anyio.to_thread.run_sync(self.run_read, fn, *args, limiter=self._get_limiter())
        except sqlite3.Error as exc:
            raise ProviderError(f"sqlite read failed on {self.path}: {exc}", provider="sqlite") from exc

    async def write(self, fn: Callable[..., T], *args: Any, after: Callable[[T], None] | None = None) -> T:
        """Run ``fn(conn, *args)`` in a worker thread inside one transaction (all or nothing)."""
        try:
            return await anyio.to_thread.run_sync(
                lambda: self.run_write(fn, *args, after=after), limiter=self._get_limiter()
            )
        except sqlite3.Error as exc:
            raise ProviderError(f"sqlite write failed on {self.path}: {exc}", provider="sqlite") from exc

    def close(self) -> None:
        """Close every connection. Later calls raise :class:`ProviderError`."""
        with self._lock:
            conns, self._idle = self._idle, []
            self._closed = True
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:
                pass
