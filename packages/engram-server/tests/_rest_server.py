"""Start a real ``engram serve`` on 127.0.0.1 (a free port) for a test, and stop it after."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def clean_env() -> dict[str, str]:
    """The environment without the developer's ENGRAM_* and OTEL_* variables (an ENGRAM_API_KEYS or
    ENGRAM_LLM__* there would change what the server does)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGRAM_", "OTEL_"))}
    return {**env, "NO_COLOR": "1", "COLUMNS": "200"}


_LISTENING = re.compile(r"engram REST API on http://127\.0\.0\.1:(\d+)")


@contextmanager
def engram_serve(db: Path, *args: str, timeout: float = 60.0) -> Iterator[str]:
    """Run ``engram serve --port 0 --db DB --embedder hash ARGS`` and yield its base URL once
    /health answers. The server picks a free port itself and prints it once it listens (no race
    with another process for a port chosen here)."""
    cmd = [
        sys.executable,
        "-m",
        "engram.cli",
        "serve",
        "--port",
        "0",
        "--db",
        str(db),
        "--embedder",
        "hash",
        "--log-level",
        "warning",
        *args,
    ]
    log = db.with_suffix(".server.log")
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=clean_env())
    url: str | None = None
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"engram serve exited with {proc.returncode}:\n{log.read_text()}")
            if url is None and (found := _LISTENING.search(log.read_text(errors="replace"))):
                url = f"http://127.0.0.1:{found.group(1)}"
            try:
                if url is not None and httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"engram serve did not answer /health in {timeout} s:\n{log.read_text()}")
            time.sleep(0.1)
        assert url is not None
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
