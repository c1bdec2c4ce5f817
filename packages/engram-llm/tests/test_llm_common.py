"""The shared helpers: Retry-After parsing, response_format normalisation, JSON extraction."""

from __future__ import annotations

import email.utils
import time

import pytest
from engram.core.errors import ConfigurationError
from engram.llm._common import extract_json, parse_retry_after, response_format_spec


def test_retry_after_forms():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15  # ms wins
    assert parse_retry_after({"retry-after-ms": "junk", "retry-after": "2"}) == 2.0
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after({"retry-after": date}) <= 30.5  # type: ignore[operator]
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-1"}) is None
    assert parse_retry_after({"retry-after": "inf"}) is None
    assert parse_retry_after({}) is None


def test_response_format_spec():
    assert response_format_spec(None) is None
    assert response_format_spec({"type": "text"}) is None
    assert response_format_spec({"type": "json_object"}).kind == "json_object"  # type: ignore[union-attr]
    schema = {"type": "object", "properties": {"facts": {"type": "array"}}}
    spec = response_format_spec(
        {"type": "json_schema", "json_schema": {"name": "facts list!", "schema": schema, "strict": True}}
    )
    assert spec is not None and spec.kind == "json_schema" and spec.schema == schema
    assert spec.name == "facts_list" and spec.strict is True
    bare = response_format_spec(schema)
    assert (
        bare is not None and bare.kind == "json_schema" and bare.schema == schema and bare.name == "response"
    )
    with pytest.raises(ConfigurationError):
        response_format_spec({"type": "yaml"})
    with pytest.raises(ConfigurationError):
        response_format_spec({"type": "json_schema", "json_schema": {"name": "x"}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', '{"a": 1}'),
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ("Sure! Here it is:\n```\n[1, 2]\n```\nAnything else?", "[1, 2]"),
        ('The answer is {"a": {"b": [1]}} as requested.', '{"a": {"b": [1]}}'),
        ("no json here", None),
        ("{broken", None),
    ],
)
def test_extract_json(text, expected):
    assert extract_json(text) == expected
