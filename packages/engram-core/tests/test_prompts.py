"""The prompts are pinned: a change to one must be deliberate and reviewed.

Each prompt's exact text is checked through its SHA-256 digest. When a test here fails because you
changed a prompt on purpose: review the new text (and bump the ``_V<n>`` suffix when its meaning
changed, so stored memories can be traced to the prompt that made them), then put the digest the
failure prints into ``DIGESTS``.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from engram.core import _prompts

DIGESTS = {
    "EXTRACT_USER_V1": "dd452ebadaea475daa5c654c98d0f4863ef839884cbb6a2cf6c43a2b1505bb7c",
    "EXTRACT_AGENT_V1": "882c046f1943cc1f26a7af8d5941bfe19316ad19b3968854283e35a6070db5cd",
    "DECIDE_V1": "c86826ad7722870818525b9adbe10ba195af75e4898ccc4eb29b2775f6822b0d",
    "PROCEDURAL_V1": "28913e7c33f85c95848afa959784d63da7b77eb0229a32eb311366fc6cc06a1d",
    "GRAPH_EXTRACT_V1": "9270d5bbec1d4d73602a64b2ec168237a3ee326dcfa1607a55d6bc4cf605d14f",
    "GRAPH_DECIDE_V1": "ab2c7ef9207f16b2d82ed4f013ab20a80650258622b6d8709c43f1db33543af7",
}


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_prompt_text_is_pinned(name: str) -> None:
    text = getattr(_prompts, name)
    assert isinstance(text, str) and text.strip()
    got = _digest(text)
    assert got == DIGESTS[name], (
        f"the text of prompt {name} changed (sha256 {got}). A prompt change must be deliberate: "
        f"review the new text, bump the version suffix if its meaning changed, and update its digest "
        f"in DIGESTS in {__file__}."
    )


def test_every_prompt_constant_is_pinned() -> None:
    """A new prompt constant must get a digest too."""
    constants = {n for n in _prompts.__all__ if re.fullmatch(r"[A-Z_]+_V\d+", n)}
    assert constants == set(DIGESTS), f"pin these prompts in DIGESTS: {sorted(constants ^ set(DIGESTS))}"


def _json_examples(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("{")]


@pytest.mark.parametrize("name", ["EXTRACT_USER_V1", "EXTRACT_AGENT_V1"])
def test_extraction_asks_for_a_json_object_of_facts(name: str) -> None:
    text = getattr(_prompts, name)
    assert "one JSON object" in text
    examples = _json_examples(text)
    assert examples and all(e.startswith('{"facts"') for e in examples)
    assert not any(line.strip().startswith("[") for line in text.splitlines()), "never a bare list"
    assert json.loads('{"facts": []}') == {"facts": []} and '{"facts": []}' in text
    # each fact's type and category come from the published vocabularies
    for word in (*_prompts.MEMORY_TYPES, *_prompts.MEMORY_CATEGORIES):
        assert f'"{word}"' in text, word
    assert "absolute date" in text


def test_user_and_agent_extraction_differ_in_whose_facts() -> None:
    assert "about the user" in _prompts.EXTRACT_USER_V1
    assert "about the agent" in _prompts.EXTRACT_AGENT_V1
    assert _prompts.EXTRACT_USER_V1 != _prompts.EXTRACT_AGENT_V1


def test_decision_uses_small_integer_ids_and_a_json_object() -> None:
    text = _prompts.DECIDE_V1
    assert "small integer" in text and '"id"' in text
    for event in ("ADD", "UPDATE", "DELETE", "NONE"):
        assert f'"{event}"' in text
    assert "one JSON object" in text
    examples = _json_examples(text)
    assert examples and all(e.startswith('{"actions"') for e in examples)
    assert "Use only the ids listed" in text


def test_procedural_asks_for_plain_text_sections() -> None:
    text = _prompts.PROCEDURAL_V1
    for section in ("Task:", "Steps:", "Outcome:", "Lessons:"):
        assert section in text
    assert "plain text" in text and "JSON" not in text


def test_vocabularies() -> None:
    assert _prompts.MEMORY_TYPES == ("factual", "preference", "procedural", "episodic")
    assert _prompts.MEMORY_CATEGORIES == (
        "personal", "preference", "professional", "plan", "health", "relationship", "misc",
    )
