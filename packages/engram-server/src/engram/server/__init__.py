"""engram servers: the REST API (engram.server.rest) and the MCP server (engram.server.mcp)."""

__all__: list[str] = []
