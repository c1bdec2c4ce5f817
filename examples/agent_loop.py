"""An agent that remembers: recall before it answers, learn after.

Each turn of the loop:

1. **recall**: ``memory.search(user_message, user_id=...)`` finds what engram knows that matters;
2. **answer**: the chat model gets those memories in its system prompt and answers;
3. **learn**: ``memory.add([user turn, assistant turn], user_id=..., infer=True)`` lets the LLM
   extract facts and decide ADD / UPDATE / DELETE / NONE against what is stored; the changes are
   printed.

It talks to any OpenAI-compatible endpoint (OpenAI, Azure's v1 URL, Ollama, vLLM, LM Studio, Groq,
Together, DeepSeek, llama.cpp, LiteLLM, ...), for the chat and for engram's own memory LLM::

    # OpenAI
    OPENAI_API_KEY=sk-... python examples/agent_loop.py --model gpt-4o-mini
    # a local Ollama
    python examples/agent_loop.py --base-url http://localhost:11434/v1 --model llama3.2

Type a message per line (an empty line or Ctrl-D ends), or pass ``--say`` once per turn.

``--scripted`` runs offline: it starts :class:`engram.testing.llm_server.LLMServer` on 127.0.0.1 (a
real HTTP server) with a small rule-based stand-in for the model, and plays a short conversation
unless ``--say`` gives one. Everything else, HTTP included, is the real path::

    uv run python examples/agent_loop.py --scripted
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
from engram.core import AsyncMemory
from engram.llm.openai import OpenAILLM

SCRIPT = [
    "Hi! I'm Maya. I live in Paris and I love black coffee.",
    "What do you know about me?",
    "I moved to Rome last month.",
    "Where do I live now?",
]

CHAT_SYSTEM = """You are a helpful assistant with a long-term memory. What you remember about the \
user (most relevant first) is below; use it when it helps, and never claim to remember anything \
that is not there.

Memories:
{memories}"""


# -- the offline stand-in for a model --------------------------------------------------------------


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def _third_person(clause: str, name: str) -> str:
    """"I love black coffee" -> "Maya loves black coffee" (simple verbs only; enough for a demo)."""
    m = re.match(r"^I\s+(\w+)(.*)$", clause)
    if not m:
        return clause
    verb, rest = m.groups()
    if not verb.endswith("ed") and verb not in ("am", "was", "can", "will", "should", "must"):
        verb = verb + ("es" if verb.endswith(("s", "sh", "ch", "o")) else "s")
    return f"{name} {verb}{rest}"


def _facts_about_user(conversation: str) -> list[str]:
    """The user's statements in the conversation engram sent, one clause each, in the third person."""
    facts = []
    for line in conversation.splitlines():
        m = re.match(r"^(?:\[[^\]]*\] )?user(?: \(([^)]*)\))?: (.*)$", line)
        if not m:
            continue
        name = m.group(1) or "The user"
        for s in _sentences(m.group(2)):
            s = re.sub(r"^(hi|hello|hey)\b\W*", "", s, flags=re.I).rstrip(".!")
            if not s or s.endswith("?"):
                continue
            if re.fullmatch(r"I'm \w+|I am \w+", s):
                facts.append(f"The user's name is {s.split()[-1]}")
                continue
            for clause in re.split(r"\s+and\s+(?=I\b)", s):
                facts.append(_third_person(clause.strip(), name))
    return facts


def _decide(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """ADD new facts, NONE for ones already stored, and a move DELETEs where the user used to live."""
    stored = {s["text"]: s["id"] for s in payload["stored"]}
    actions: list[dict[str, Any]] = []
    for f in payload["new_facts"]:
        if f["text"] in stored:
            actions.append({"fact": f["fact"], "event": "NONE", "id": stored[f["text"]]})
            continue
        if "moved to" in f["text"]:
            for text, i in stored.items():
                if " live in " in text or " lives in " in text:
                    actions.append({"fact": f["fact"], "event": "DELETE", "id": i})
        actions.append({"fact": f["fact"], "event": "ADD"})
    return actions


def offline_model(request: Any) -> Any:
    """Answers engram's fact extraction and decisions, and the chat, from simple rules."""
    from engram.core._prompts import DECIDE_V1, EXTRACT_AGENT_V1, EXTRACT_USER_V1
    from engram.testing.llm_server import Reply

    messages = request.messages
    system = "\n".join(str(m.get("content")) for m in messages if m.get("role") == "system")
    user = str(messages[-1].get("content", ""))
    if DECIDE_V1 in system:
        return Reply.json({"actions": _decide(json.loads(user))})
    if EXTRACT_USER_V1 in system or EXTRACT_AGENT_V1 in system:
        facts = [{"text": t, "type": "factual", "category": "personal"} for t in _facts_about_user(user)]
        return Reply.json({"facts": facts})
    memories = system.split("Memories:", 1)[-1].strip()
    if user.rstrip().endswith("?"):
        if memories and memories != "(nothing yet)":
            return Reply.text("Here is what I remember:\n" + memories)
        return Reply.text("I don't know that yet.")
    return Reply.text("Got it, I'll remember that.")


# -- the loop ----------------------------------------------------------------------------------------


async def turn(
    memory: AsyncMemory, chat: OpenAILLM, user_id: str, message: str, *, name: str | None = None, limit: int = 5
) -> str:
    """One turn: recall, answer, learn. Returns the answer."""
    hits = (await memory.search(message, user_id=user_id, limit=limit))["results"]
    lines = [f"- {h['memory']}" + (" (no longer true)" if h.get("archived") else "") for h in hits]
    system = CHAT_SYSTEM.format(memories="\n".join(lines) if lines else "(nothing yet)")
    reply = await chat.generate([{"role": "system", "content": system}, {"role": "user", "content": message}])
    answer = reply.text.strip()
    print(f"\nuser> {message}")
    print(f"  recalled: {len(hits)} {'memory' if len(hits) == 1 else 'memories'}")
    print(f"assistant> {answer}")
    learned = await memory.add(
        [{"role": "user", "content": message, **({"name": name} if name else {})},
         {"role": "assistant", "content": answer}],
        user_id=user_id,
    )
    for r in learned["results"]:
        was = f"  (was: {r['previous_memory']})" if r.get("previous_memory") else ""
        print(f"  memory {r['event']:<6} {r['memory']}{was}")
    report = learned.get("infer") or {}
    if report.get("fallback"):
        print(f"  memory fallback: {report['fallback']}")
    for p in report.get("problems", []):
        print(f"  memory problem: {p}")
    return answer


def _messages(args: argparse.Namespace) -> list[str]:
    if args.say:
        return list(args.say)
    if args.scripted:
        return list(SCRIPT)
    out = []
    while True:
        try:
            line = input("user> ") if sys.stdin.isatty() else sys.stdin.readline()
        except EOFError:
            break
        if not line.strip():
            break
        out.append(line.strip())
        if sys.stdin.isatty():
            return out + _messages(args)  # pragma: no cover - interactive
    return out


async def run(args: argparse.Namespace, base_url: str, api_key: str | None, model: str) -> None:
    llm_config = {"base_url": base_url, "model": model, "api_key": api_key, "timeout": args.timeout}
    config: dict[str, Any] = {
        "vector_store": f"sqlite:///{args.db}",
        "embedder": args.embedder,
        "llm": {"provider": "openai", "config": {k: v for k, v in llm_config.items() if v is not None}},
    }
    async with AsyncMemory(config) as memory, OpenAILLM(**{k: v for k, v in llm_config.items() if v is not None}) as chat:
        for message in _messages(args):
            await turn(memory, chat, args.user_id, message, name=args.name)
        everything = (await memory.get_all(user_id=args.user_id, include_archived=True))["results"]
        print(f"\n{args.user_id}'s memories:")
        for m in everything:
            mark = f"  [archived: {m['archive_reason']}]" if m.get("archived") else ""
            print(f"  - {m['memory']}{mark}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base-url", default=os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
                   help="OpenAI-compatible API root (env OPENAI_BASE_URL)")
    p.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"), help="model name (env OPENAI_MODEL)")
    p.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY"), help="API key (env OPENAI_API_KEY)")
    p.add_argument("--user-id", default="maya")
    p.add_argument("--name", default="Maya", help="the user's name, given to the memory LLM as the speaker")
    p.add_argument("--db", type=Path, help="SQLite file for the memories (default: a temporary one)")
    p.add_argument("--embedder", default="local", help="local (default, offline model), hash (fast, not semantic), ...")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per LLM request attempt")
    p.add_argument("--say", action="append", help="a user message (repeat for several turns)")
    p.add_argument("--scripted", action="store_true", help="run offline against a local scripted LLM server")
    args = p.parse_args(argv)

    with ExitStack() as stack:
        if args.db is None:
            args.db = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "agent.db"
        if args.scripted:
            from engram.testing.llm_server import LLMServer

            server = stack.enter_context(LLMServer(default=offline_model))
            base_url, api_key, model = server.openai_url, None, "offline-rules"
            print(f"offline: scripted model at {base_url}")
        else:
            base_url, api_key, model = args.base_url, args.api_key, args.model
        anyio.run(run, args, base_url, api_key, model)


if __name__ == "__main__":
    main()
