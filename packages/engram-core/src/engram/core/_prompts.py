"""The prompts engram sends to an LLM, as versioned constants.

Each prompt is pinned by a test (``tests/test_prompts.py``) that checks its exact text through a
SHA-256 digest, so a change to a prompt is a deliberate, reviewed change: edit the text, bump the
version in its name when the meaning changes, and update the digest in the test.

The prompts are ours. They ask for JSON objects (never bare lists) so that JSON mode and tool
calling work with every provider, and they show stored memories under small integer ids, never
raw UUIDs, so the model cannot garble an id into another memory's.
"""

from __future__ import annotations

__all__ = [
    "DECIDE_V1",
    "EXTRACT_AGENT_V1",
    "EXTRACT_USER_V1",
    "MEMORY_CATEGORIES",
    "MEMORY_TYPES",
    "PROCEDURAL_V1",
]

MEMORY_TYPES = ("factual", "preference", "procedural", "episodic")
MEMORY_CATEGORIES = ("personal", "preference", "professional", "plan", "health", "relationship", "misc")

_FACT_FORMAT = """\
Answer with one JSON object and nothing else:
{"facts": [{"text": "...", "type": "...", "category": "..."}]}
- "text": one self-contained statement that still makes sense months later, without the
  conversation around it. Name the person it is about (use their name when the conversation
  gives it).
- "type": "factual" (a fact about someone's life or the world), "preference" (a like, dislike or
  wish), "procedural" (how something is done, a routine, a working method) or "episodic" (an event
  that happened at a particular time).
- "category": one of "personal", "preference", "professional", "plan", "health", "relationship",
  "misc".
Dates: the current date and each message's date are given. Rewrite every relative date
("yesterday", "next Friday", "last summer", "in two weeks") as an absolute date such as
"2024-05-07" or "May 2024", counted from the date of the message that says it.
Write the facts in the language of the conversation. Never invent anything the conversation does
not say. Keep each fact short; split a sentence holding several facts into several facts.
If nothing is worth remembering, answer {"facts": []}."""

EXTRACT_USER_V1 = (
    """You are the memory of a personal assistant. From the conversation below, write down what is \
worth remembering about the user for future conversations: who they are, the people and things in \
their life, what they like and dislike, their plans, work, health, and the events they tell about.

Take facts only from what the user says. The assistant's messages are context: use them to \
understand the user's words, never as facts about the user. Skip greetings, small talk, questions \
that carry no information about the user, and anything that only matters for this conversation.

"""
    + _FACT_FORMAT
)

EXTRACT_AGENT_V1 = (
    """You are the memory of an AI agent. From the conversation below, write down what is worth \
remembering about the agent itself for its future conversations: what it said about its own \
identity, role and abilities, the commitments and promises it made, the decisions it took and why, \
the preferences and rules it stated for how it works, and what it learned about doing its tasks.

Take facts only from what the agent (the assistant) says. The user's messages are context, never \
facts about the agent. Skip greetings, small talk and anything that only matters for this \
conversation.

"""
    + _FACT_FORMAT
)

DECIDE_V1 = """You keep a long-term memory up to date. You are given the memories already stored \
(each under a small integer "id") and new facts (each under an integer "fact"). Compare every new \
fact with the stored memories and decide what to do:

- "ADD": the fact is new information. Store it.
- "UPDATE": the fact is about the same thing as a stored memory and adds to it or makes it more
  precise ("likes coffee" -> "likes black coffee, no sugar"). Give that memory's "id" and the new
  "text", which merges both and keeps everything still true.
- "DELETE": the fact shows that a stored memory is no longer true ("lives in Paris", then "moved
  to Rome"). Give that memory's "id". If the new fact is itself worth remembering, add it with a
  separate "ADD" action for the same fact.
- "NONE": the fact is already stored (possibly in other words). Nothing to do.

Use only the ids listed under "stored". Every fact gets at least one action.

Answer with one JSON object and nothing else:
{"actions": [{"fact": 0, "event": "ADD"|"UPDATE"|"DELETE"|"NONE", "id": null|<stored id>, "text": "..."}]}
"text" is the text to store for "ADD" and "UPDATE", and may be left out otherwise."""

PROCEDURAL_V1 = """You write the procedural memory of an AI agent: a summary of one of its runs \
that lets it do the same kind of task better next time. From the conversation below, write:

Task: what the agent was asked to do, in one sentence.
Steps: the numbered steps the agent took, in order, each with the tool or action used, the key \
inputs (names, values, paths, URLs) and the result that mattered.
Outcome: whether the task was done, and the final result.
Lessons: what worked, what failed and how it was worked around, what to do differently next time.

Keep every concrete detail the next run would need. Do not invent steps that are not in the \
conversation. Answer with the summary as plain text."""
