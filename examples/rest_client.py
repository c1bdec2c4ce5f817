"""An agent loop over engram's REST API: recall before it answers, learn after.

Start a server, then run this against it::

    engram serve --port 8000                       # terminal 1 (add --api-keys FILE for auth)
    python examples/rest_client.py --user-id maya  # terminal 2

Each turn:

1. **recall**: ``POST /search`` with the user's message finds what engram knows that matters;
2. **answer**: a real agent would give those memories to its model; this example has no model,
   so its "answer" just says what it recalled (swap in your LLM call there);
3. **learn**: ``POST /memories`` with the user turn and the answer. With an LLM configured on the
   server (``engram serve --llm ...``) the server extracts facts and decides ADD / UPDATE /
   DELETE / NONE; without one each turn is stored verbatim (``--no-infer`` forces that).

Only httpx is needed. The API key, when the server wants one, comes from ``--api-key`` or
``ENGRAM_API_KEY`` (create one with ``engram serve key add --keys FILE --user-id maya``).
Type a message per line (an empty line or Ctrl-D ends), pass ``--say`` once per turn, or ``--demo``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx


class EngramError(Exception):
    """An error answer from the server: its stable code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Engram:
    """A small client for the REST API (mem0's paths and bodies)."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(method, path, **kwargs)
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
            except (ValueError, KeyError, TypeError):
                err = {"code": "http_error", "message": r.text[:200]}
            raise EngramError(r.status_code, err["code"], err["message"])
        return r.json()

    def search(self, query: str, user_id: str, limit: int = 5) -> list[dict[str, Any]]:
        return list(
            self._call("POST", "/search", json={"query": query, "user_id": user_id, "limit": limit})[
                "results"
            ]
        )

    def add(self, messages: list[dict[str, str]], user_id: str, infer: bool = True) -> list[dict[str, Any]]:
        body = {"messages": messages, "user_id": user_id, "infer": infer}
        return list(self._call("POST", "/memories", json=body)["results"])

    def list(self, user_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", "/memories", params={"user_id": user_id})["results"])

    def close(self) -> None:
        self.http.close()


DEFAULT_TURNS = [
    "Hi! I'm Maya, I just moved to Portland.",
    "I'm vegetarian, so no meat in recipe ideas please.",
    "What do you know about where I live?",
    "Can you suggest a dinner for me tonight?",
]


def answer(message: str, recalled: list[dict[str, Any]]) -> str:
    """Stands in for the model: a real agent sends ``recalled`` to its LLM with the message."""
    if not recalled:
        return "Noted. I'll remember that."
    return f"(an answer to {message!r} that uses the {len(recalled)} memories recalled)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("ENGRAM_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--api-key", default=os.environ.get("ENGRAM_API_KEY"))
    parser.add_argument("--user-id", default="maya")
    parser.add_argument("--say", action="append", help="One user turn (repeatable); else read stdin lines.")
    parser.add_argument("--demo", action="store_true", help="Play a short sample conversation.")
    parser.add_argument(
        "--no-infer", action="store_true", help="Store turns verbatim even with a server LLM."
    )
    parser.add_argument("--limit", type=int, default=3, help="Memories recalled per turn.")
    args = parser.parse_args(argv)

    turns = args.say or (DEFAULT_TURNS if args.demo else None)
    client = Engram(args.url, args.api_key)
    try:
        source = iter(turns) if turns else (line.rstrip("\n") for line in sys.stdin)
        for message in source:
            if not message.strip():
                break
            recalled = client.search(message, args.user_id, limit=args.limit)  # 1. recall
            print(f"user> {message}")
            for m in recalled:
                print(f"  recalled ({m['score']:.2f}): {m['memory']}")
            reply = answer(message, recalled)  # 2. answer
            print(f"agent> {reply}")
            changes = client.add(  # 3. learn
                [{"role": "user", "content": message}, {"role": "assistant", "content": reply}],
                args.user_id,
                infer=not args.no_infer,
            )
            for c in changes:
                print(f"  learned [{c['event']}]: {c['memory']}")
        print(f"{len(client.list(args.user_id))} memories stored for {args.user_id}")
    except EngramError as exc:
        print(f"engram error {exc.status} ({exc.code}): {exc.message}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:
        print(f"cannot reach {args.url}: {exc} (is `engram serve` running?)", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
