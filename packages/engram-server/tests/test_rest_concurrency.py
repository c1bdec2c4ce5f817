"""50 concurrent clients on one real ``engram serve`` (127.0.0.1, SQLite file, hash embedder):
adds and searches interleaved, no error response, and not one write lost."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _rest_server import engram_serve

CLIENTS = 50
USERS = 10  # five clients write to each user: concurrent writes to one scope too
ADDS = 4
SEARCHES = 2


def test_fifty_clients_add_and_search_without_losing_a_write(tmp_path: Path) -> None:
    with engram_serve(tmp_path / "engram.db") as url:
        statuses: Counter[int] = Counter()
        written: dict[str, set[str]] = {f"user-{u}": set() for u in range(USERS)}

        async def client(n: int) -> None:
            user = f"user-{n % USERS}"
            async with httpx.AsyncClient(base_url=url, timeout=60.0) as http:
                for i in range(ADDS):
                    text = f"client {n} fact {i}: likes colour {n * 10 + i}"
                    r = await http.post("/memories", json={"messages": text, "user_id": user, "infer": False})
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        (change,) = r.json()["results"]
                        assert change["memory"] == text
                        written[user].add(change["id"])
                    if i % 2 == 1:
                        for _ in range(SEARCHES // 2):
                            s = await http.post(
                                "/search", json={"query": f"colour {n}", "user_id": user, "limit": 5}
                            )
                            statuses[s.status_code] += 1
                            assert all(h["user_id"] == user for h in s.json().get("results", []))

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for n in range(CLIENTS):
                    tg.start_soon(client, n)

        anyio.run(main)
        assert statuses == Counter({200: CLIENTS * (ADDS + SEARCHES)})
        per_user = CLIENTS // USERS * ADDS
        for user, ids in written.items():
            assert len(ids) == per_user
            listed = httpx.get(f"{url}/memories", params={"user_id": user, "limit": 1000}).json()["results"]
            assert {m["id"] for m in listed} == ids
