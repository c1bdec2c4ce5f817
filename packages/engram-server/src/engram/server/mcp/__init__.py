"""engram.server.mcp: an MCP server (the official ``mcp`` SDK) over the memory engine.

``create_server(config_or_memory, default_scope=...)`` returns the SDK's ``MCPServer`` with nine
tools (add, search, list, get, update, delete, history, graph, reset); ``engram mcp`` runs it over
stdio or streamable HTTP. ``docs/mcp.md`` describes the tools, the scope rules and client setup.
"""

from ._server import create_server
from ._tools import ServerState

__all__ = ["ServerState", "create_server"]
