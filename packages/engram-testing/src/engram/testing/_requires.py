"""Capability requirements: a check runs only when the provider under test declares what it needs.

In the spirit of SQLAlchemy's dialect requirements: each check names the optional features it
exercises with :func:`requires`; the provider declares what it has in its ``capabilities``
frozenset (see :mod:`engram.core._protocols`); a check whose requirement is missing is skipped
with a reason that names the missing capability. A test class can narrow the set with a
``capabilities`` class attribute (for example a ``:memory:`` database whose class says
``"persistent"``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import pytest

__all__ = [
    "CAPABILITIES",
    "FILTER_CAPABILITIES",
    "ProviderSuite",
    "capabilities_of",
    "filter_requirements",
    "requirements_of",
    "requires",
    "skip_unless_capable",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The capability names the suites know. A store may declare others; they are ignored here.
CAPABILITIES: dict[str, str] = {
    "lexical": "vector stores: full-text (BM25) search, mode='lexical' and the lexical half of mode='hybrid'; "
    "rerankers: the document that shares the query's words ranks first",
    "history": "the store is also a HistoryStore and writes WriteBatch.events with the batch",
    "persistent": "data survives closing the store and opening it again (the test class's reopen hook)",
    "archive": "WriteBatch.archive keeps old versions, listable and searchable with archived=True",
    "rehearsal": "vector stores: record_access(ids, at) counts accesses atomically (access_count + 1, "
    "last_accessed_at = the later time) and get/list/search return access_count and last_accessed_at",
    "neighbors": "vector stores: neighbors(scope, ids, filters=) returns the active memories of the scope "
    "written just before and after each id (created_at, then the order of writing)",
    "substring_filters": "contains/icontains match substrings of string fields; a store without it raises "
    "InvalidFilterError for a contains/icontains filter with a string operand",
    "string_range_filters": "gt/gte/lt/lte compare strings in code-point order; a store without it raises "
    "InvalidFilterError for a range filter with a string operand",
    "semantic": "embedders and rerankers: meaning counts, not only shared words (a paraphrase is closer to "
    "the query than an unrelated text; the relevant document ranks first)",
    "pointwise": "rerankers: a document's score depends only on the query and that document (the same alone, "
    "beside others, at any position, and with top_n)",
    "json": "LLMs: response_format={'type': 'json_object'} gets a reply whose text is that JSON object",
    "tools": "LLMs: tool definitions are sent and the model's tool calls come back as LLMResponse.tool_calls "
    "with dict arguments",
    "remote": "the provider calls a server, which can fail: a server error raises ProviderError, no answer "
    "ProviderTimeoutError (the LLM suite scripts both)",
}

#: The capabilities a filter can need beyond the operators every store must evaluate exactly.
FILTER_CAPABILITIES = ("substring_filters", "string_range_filters")

_ATTR = "__engram_requires__"


def requires(*capabilities: str) -> Callable[[F], F]:
    """Mark a conformance check as needing these provider capabilities.

    Example::

        @requires("lexical")
        async def test_lexical_finds_word(self, store): ...

    Raises:
        ValueError: an unknown capability name (a typo would silently skip the check).
    """
    unknown = [c for c in capabilities if c not in CAPABILITIES]
    if unknown:
        raise ValueError(f"unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")

    def mark(fn: F) -> F:
        setattr(fn, _ATTR, frozenset(getattr(fn, _ATTR, frozenset())) | frozenset(capabilities))
        return fn

    return mark


def filter_requirements(f: Any) -> frozenset[str]:
    """The optional capabilities a parsed filter needs (see :data:`FILTER_CAPABILITIES`).

    ``contains``/``icontains`` with a string operand need ``"substring_filters"`` (the operator
    matches a substring of a string field as well as an element of a list field); ``gt``, ``gte``,
    ``lt``, ``lte`` with a string operand need ``"string_range_filters"``. Every other filter is
    one that every vector store must evaluate exactly: equality with JSON types, numeric and time
    ranges, ``in``/``nin``, list elements, null and missing fields, ``AND``/``OR``/``NOT``.
    """
    from engram.core._filters import TIME_FIELDS, And, Cmp, Not, Or

    found: set[str] = set()
    stack = [f]
    while stack:
        node = stack.pop()
        if isinstance(node, Cmp):
            if node.op in ("contains", "icontains") and isinstance(node.value, str):
                found.add("substring_filters")
            elif (node.op in ("gt", "gte", "lt", "lte") and isinstance(node.value, str)
                  and node.field not in TIME_FIELDS):
                found.add("string_range_filters")
        elif isinstance(node, And | Or):
            stack.extend(node.items)
        elif isinstance(node, Not):
            stack.append(node.item)
    return frozenset(found)


def requirements_of(fn: Any) -> frozenset[str]:
    """The capabilities a check was marked with (empty when none)."""
    return frozenset(getattr(fn, _ATTR, frozenset()))


def capabilities_of(test: Any, provider: Any) -> frozenset[str]:
    """What the provider can do: the test class's ``capabilities`` override when set, else the
    provider's own ``capabilities`` attribute (empty when it has none)."""
    declared = getattr(test, "capabilities", None)
    if declared is None:
        declared = getattr(provider, "capabilities", frozenset())
    return frozenset(declared)


def skip_unless_capable(request: pytest.FixtureRequest, provider: Any) -> None:
    """Skip the running check when the provider lacks a capability the check requires."""
    fn = getattr(request, "function", None)
    needed = requirements_of(fn)
    if not needed:
        return
    have = capabilities_of(request.instance, provider)
    missing = sorted(needed - have)
    if missing:
        names = ", ".join(repr(m) for m in missing)
        source = ""
        if getattr(request.instance, "capabilities", None) is not None:
            source = f" as declared by {type(request.instance).__name__}.capabilities"
        pytest.skip(
            f"{type(provider).__name__} lacks capability {names}{source} "
            f"({'; '.join(CAPABILITIES[m] for m in missing)})"
        )


class ProviderSuite:
    """What every conformance mixin shares: the ``capabilities`` override and the ``reopen`` hook.

    Attributes:
        capabilities: ``None`` (default) reads the provider's own ``capabilities``; a frozenset
            replaces it for these checks (to test less than the class claims, e.g. ``:memory:``).
    """

    capabilities: ClassVar[frozenset[str] | None] = None

    async def reopen(self, provider: Any) -> Any:
        """Close ``provider`` and return a new instance over the same data.

        Needed by the checks that require ``"persistent"``; the suite closes the instance returned.
        """
        raise NotImplementedError

    def caps(self, provider: Any) -> frozenset[str]:
        """The capabilities these checks assume for ``provider``."""
        return capabilities_of(self, provider)

    async def reopened(self, provider: Any) -> Any:
        """Call :meth:`reopen`, failing with a how-to when the test class does not define it."""
        if getattr(type(self).reopen, "__qualname__", "") == "ProviderSuite.reopen":
            pytest.fail(
                f"{type(provider).__name__} declares 'persistent' but {type(self).__name__} has no "
                "`async def reopen(self, provider)` hook that closes it and opens the same data again"
            )
        return await self.reopen(provider)
