"""``engram mcp``: the MCP server (engram-server, ``pip install "engram[server]"``)."""

from __future__ import annotations

from ._app import app  # noqa: F401  (commands register on the shared app)
