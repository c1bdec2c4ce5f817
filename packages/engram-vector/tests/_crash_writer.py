"""Writer process for the crash test: adds, updates and deletes memories until it is killed.

Usage: python _crash_writer.py DB_PATH SEED. Prints one line per committed operation.
"""

import random
import sys

import anyio
from engram.core import AsyncMemory


async def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    words = "alpha beta gamma delta hiking trail coffee paris job dog cat piano music book".split()
    config = {"vector_store": {"provider": "sqlite", "config": {"path": path}}, "embedder": "hash"}
    async with AsyncMemory(config) as memory:
        ids: list[str] = []
        i = 0
        while True:
            i += 1
            op = rng.random()
            if op < 0.6 or len(ids) < 5:
                turns = [" ".join(rng.choices(words, k=8)) + f" {i}-{j}" for j in range(rng.randint(1, 8))]
                res = await memory.add(turns, user_id=f"u{i % 3}", infer=False)
                ids += [r["id"] for r in res["results"]]
            elif op < 0.85:
                await memory.update(rng.choice(ids), " ".join(rng.choices(words, k=6)) + f" updated {i}")
            else:
                await memory.delete(ids.pop(rng.randrange(len(ids))))
            print(i, flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
