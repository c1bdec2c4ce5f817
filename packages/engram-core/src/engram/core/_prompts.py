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
    "GRAPH_DECIDE_V1",
    "GRAPH_EXTRACT_V1",
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

GRAPH_EXTRACT_V1 = """You build a knowledge graph from a conversation: the entities it names and \
the relations between them, so that an assistant can later answer questions about who and what \
is connected, and since when.

Entities: people, pets, places, organisations, products, projects, events, works, and other \
named or clearly identified things. Give each its name as the conversation spells it, and a \
lower-case "type": person, animal, place, organization, product, project, event, work, concept \
or other. When someone speaks of themselves ("I", "me", "my"), use the speaker's name given \
below, never "I" or "user".

Relations: directed, from "source" to "destination", both named in "entities". Name each \
relation in lower snake case with a verb first and without tense words: lives_in, works_at, \
married_to, has_pet, likes, dislikes, knows, studies_at, born_in, owns, member_of, plans_to_visit. \
Keep one relation per statement; split a sentence holding several.

Time: the current date and each message's date are given. When the conversation says when a \
relation started or stopped holding, give it as an absolute date ("2024-05-07", "2024-05" or \
"2024") in "valid_at" or "invalid_at", counted from the date of the message that says it; \
otherwise leave them out. When a message says that a relation no longer holds ("I moved out of \
Paris", "we broke up"), give that relation with "ended": true.

Take only what the conversation states; never invent. If nothing qualifies, give empty lists.
Answer by calling the tool, or with one JSON object and nothing else:
{"entities": [{"name": "...", "type": "..."}], "relations": [{"source": "...", "relation": "...", "destination": "...", "valid_at": "...", "invalid_at": "...", "ended": false}]}"""

GRAPH_DECIDE_V1 = """You keep a knowledge graph current. You are given relations already stored \
as current (each under a small integer "id") and new relations just learned (each under an \
integer "new"). Decide which stored relations a new relation contradicts: the stored one can no \
longer be true now that the new one is.

- A relation that holds one value at a time (marked "single_valued", such as lives_in, works_at, \
married_to) is contradicted by a new relation with the same source and name but another \
destination: "Alice lives_in Paris" is contradicted by "Alice lives_in Rome".
- A relation that can hold many values at once (likes, knows, visited, has_pet) is not \
contradicted by another value: "Alice likes tea" stands beside "Alice likes coffee". It is \
contradicted only by its opposite ("Alice dislikes tea" contradicts "Alice likes tea").
- For relations not marked, judge by their meaning in the same way.
- A stored relation that the new relations do not contradict stays; when unsure, keep it.

Use only the ids listed under "stored" and the numbers listed under "new".
Answer by calling the tool, or with one JSON object and nothing else:
{"contradicted": [{"id": <stored id>, "new": <new relation number>}]}
Answer {"contradicted": []} when nothing is contradicted."""
