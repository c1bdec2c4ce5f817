"""engram-llm's tests run against :class:`engram.testing.llm_server.LLMServer`, a real HTTP server on
127.0.0.1 that stands in for the remote APIs (they cannot be reached from the test machines)."""

from engram.testing.llm_server import llm_server  # noqa: F401  (registers the fixture)
