"""Context-aware weighting: a query's task type times a memory's type (off by default).

SKELETON: the context helper replaces this module (classifier, weight matrix, docstrings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from ._types import ScoredMemory

__all__ = ["ContextConfig", "apply_context", "resolve_task_type"]


class ContextConfig(BaseModel):
    """``search.context``: off by default."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False


async def resolve_task_type(query: str, task_type: str | None, config: ContextConfig, llm: Any) -> str | None:
    """The query's task type: the caller's, else classified when enabled, else ``None``."""
    return task_type


def apply_context(hits: Sequence[ScoredMemory], task_type: str | None, config: ContextConfig) -> list[ScoredMemory]:
    """Multiply each hit's score by the weight of (task type, memory type) and re-sort."""
    return list(hits)
