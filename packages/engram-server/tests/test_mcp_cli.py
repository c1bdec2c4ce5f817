"""``engram mcp`` as a command: stdout carries only the protocol, and its failures are one red line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from engram.cli import app
from typer.testing import CliRunner

TIMEOUT = 30.0


def _clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("ENGRAM_", "OTEL_"))}, **extra}


def test_stdout_holds_only_protocol_messages(tmp_path: Path) -> None:
    """Raw JSON-RPC over the pipes of a server with no default scope: every stdout line is a
    JSON-RPC reply, the banner goes to stderr, and the process ends cleanly when stdin closes."""
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "raw", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "add_memory", "arguments": {"messages": "Raw pipes work", "user_id": "raw"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "search_memory", "arguments": {"query": "pipes"}},
        },
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "engram.cli", "mcp", "--db", str(tmp_path / "raw.db"), "--embedder", "hash"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    lines = []
    try:
        for req in requests:  # one at a time: the server answers requests concurrently
            proc.stdin.write(json.dumps(req) + "\n")
            proc.stdin.flush()
            if "id" in req:
                lines.append(proc.stdout.readline())
        out, err = proc.communicate(timeout=TIMEOUT)  # closes stdin: the server ends
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out == ""  # nothing after the replies
    replies = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    assert sorted(r["id"] for r in replies) == [1, 2, 3]
    assert all(r["jsonrpc"] == "2.0" for r in replies)
    by_id = {r["id"]: r for r in replies}
    assert by_id[1]["result"]["serverInfo"]["name"] == "engram"
    assert "no default scope" in by_id[1]["result"]["instructions"]
    assert by_id[2]["result"]["structuredContent"]["results"][0]["memory"] == "Raw pipes work"
    missing = by_id[3]["result"]
    assert missing["isError"] is True and "InvalidScopeError: no scope" in missing["content"][0]["text"]
    assert "engram MCP server on stdio" in err
    assert proc.returncode == 0


def test_without_engram_server_one_red_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "engram.server.mcp", None)  # import fails as if not installed
    result = CliRunner().invoke(app, ["mcp", "--db", str(tmp_path / "x.db"), "--embedder", "hash"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        'error: the MCP server needs engram-server: pip install "engram[server]"'
    ]
    assert result.stdout == ""


def test_an_unusable_mcp_sdk_is_named_not_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """engram-server is installed but its import of the SDK fails (as with mcp 1.x, which has no
    ``mcp.server.mcpserver``): the message is about the SDK, not about installing engram-server."""
    for name in [m for m in sys.modules if m == "engram.server.mcp" or m.startswith("engram.server.mcp.")]:
        monkeypatch.delitem(sys.modules, name)  # imported afresh, then restored
    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)
    result = CliRunner().invoke(app, ["mcp", "--db", str(tmp_path / "x.db"), "--embedder", "hash"])
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        "error: engram mcp needs the mcp SDK version 2 or later, and the installed mcp SDK "
        f'({version("mcp")}) is not usable: pip install "mcp>=2"'
    )
    assert "engram[server]" not in result.stderr
    assert result.stdout == ""


def test_a_port_in_use_is_one_red_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            app,
            [
                "mcp",
                "-t",
                "streamable-http",
                "--port",
                str(port),
                "--db",
                str(tmp_path / "x.db"),
                "--embedder",
                "hash",
            ],
        )
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "in use" in line
    assert result.stdout == ""


def test_a_bad_default_scope_is_one_red_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENGRAM_USER_ID", "x" * 300)
    result = CliRunner().invoke(app, ["mcp", "--db", str(tmp_path / "x.db"), "--embedder", "hash"])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: user_id must be a non-empty string of at most 256 characters")
    assert result.stdout == ""


def test_transport_choices() -> None:
    result = CliRunner().invoke(app, ["mcp", "--transport", "sse"])
    assert result.exit_code == 2
    assert "'sse' is not one of" in result.stderr and "'streamable-http'" in result.stderr
