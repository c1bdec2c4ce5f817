from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from engram.cli import app
from typer.testing import CliRunner


@pytest.fixture(autouse=True)
def _clean_engram_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No ENGRAM_* variable from the developer's shell leaks into a test, and nothing touches the
    real user data directory."""
    for name in list(os.environ):
        if name.startswith("ENGRAM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "engram.db"


Invoke = Callable[..., Result]


@pytest.fixture
def cli(db: Path) -> Invoke:
    """``cli("search", "q", "-u", "x")``: runs the app in-process on a fresh database with the hash
    embedder (fast, no model), unless the call gives its own ``--db`` / ``--embedder``."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, default_store: bool = True) -> Result:
        argv = list(args)
        if default_store and "--db" not in argv and argv and argv[0] != "demo":
            argv += ["--db", str(db)]
        if default_store and "--embedder" not in argv:
            argv += ["--embedder", "hash"]
        return runner.invoke(app, argv, input=input)

    return invoke


@pytest.fixture
def ok_json() -> Callable[[Result], Any]:
    """Asserts a command succeeded and returns its stdout parsed as JSON (so stdout held only JSON)."""

    def check(result: Result) -> Any:
        assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr, result.exception)
        return json.loads(result.stdout)

    return check
