"""examples/rest_client.py against a real ``engram serve`` subprocess, with and without API keys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from _rest_server import clean_env, engram_serve

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "rest_client.py"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_env(), **(env or {})},
    )


def test_example_recalls_what_it_learned(tmp_path: Path) -> None:
    with engram_serve(tmp_path / "engram.db") as url:
        first = _run("--url", url, "--user-id", "maya", "--say", "I am vegetarian and live in Portland")
        assert first.returncode == 0, first.stderr
        assert "learned [ADD]: I am vegetarian and live in Portland" in first.stdout
        second = _run("--url", url, "--user-id", "maya", "--say", "Where do I live, Portland?")
        assert second.returncode == 0, second.stderr
        assert "recalled" in second.stdout and "I am vegetarian and live in Portland" in second.stdout
        demo = _run("--url", url, "--user-id", "sam", "--demo")
        assert demo.returncode == 0, demo.stderr
        assert demo.stdout.count("user> ") == 4 and "memories stored for sam" in demo.stdout
        stored = httpx.get(f"{url}/memories", params={"user_id": "maya"}).json()["results"]
        assert "I am vegetarian and live in Portland" in {m["memory"] for m in stored}
        assert all(m["user_id"] == "maya" for m in stored)


def test_example_with_a_scoped_api_key(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    made = subprocess.run(
        [sys.executable, "-m", "engram.cli", "serve", "key", "add", "--keys", str(keys), "--user-id", "maya"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("ek_") and key not in keys.read_text()
    with engram_serve(tmp_path / "engram.db", "--api-keys", str(keys)) as url:
        ok = _run("--url", url, "--user-id", "maya", "--say", "hello", env={"ENGRAM_API_KEY": key})
        assert ok.returncode == 0, ok.stderr
        other = _run("--url", url, "--user-id", "bob", "--say", "hello", env={"ENGRAM_API_KEY": key})
        assert other.returncode == 1 and "403 (forbidden)" in other.stderr
        none = _run("--url", url, "--user-id", "maya", "--say", "hello", env={"ENGRAM_API_KEY": ""})
        assert none.returncode == 1 and "401 (unauthorized)" in none.stderr
