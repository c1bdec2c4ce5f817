"""``scripted``: an LLM that replies from a script, for tests, demos and parity checks."""

from ._scripted import ScriptedLLM

__all__ = ["ScriptedLLM"]
