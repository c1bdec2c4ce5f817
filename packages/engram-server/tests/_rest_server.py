"""Start a real ``engram serve`` on 127.0.0.1 (a free port) for a test, and stop it after."""

from __future__ import annotations

import os
import signal
import socket
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def engram_serve(db: Path, *args: str, timeout: float = 60.0) -> Iterator[str]:
    """Run ``engram serve --db DB --embedder hash ARGS`` and yield its base URL once /health answers."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "engram.cli",
        "serve",
        "--port",
        str(port),
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
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"engram serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"engram serve did not answer /health in {timeout} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
