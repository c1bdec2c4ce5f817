"""``engram serve`` and ``engram serve key``: the commands as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _rest_server import clean_env

ENV = clean_env()


def _engram(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engram.cli", *args], capture_output=True, text=True, timeout=timeout, env=ENV
    )


def test_serve_without_engram_server_says_how_to_install() -> None:
    code = (
        "import sys; sys.modules['engram.server'] = None\n"
        "from engram.cli._app import main; sys.argv = ['engram', 'serve']; main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=ENV)
    assert r.returncode == 2
    assert r.stderr.strip() == 'error: engram serve needs the REST server: pip install "engram[server]"'


def test_key_add_list_remove(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    refused = _engram("serve", "key", "add", "--keys", str(keys))
    assert refused.returncode == 2 and "--admin" in refused.stderr and not keys.exists()
    both = _engram("serve", "key", "add", "--keys", str(keys), "--admin", "-u", "a")
    assert both.returncode == 2
    made = _engram("serve", "key", "add", "--keys", str(keys), "-u", "alice", "--label", "laptop", "--json")
    assert made.returncode == 0, made.stderr
    record = json.loads(made.stdout)
    assert record["user_id"] == "alice" and record["label"] == "laptop" and "hash" not in record
    admin = _engram("serve", "key", "add", "--keys", str(keys), "--admin")
    assert admin.stdout.strip().startswith("ek_") and "shown only now" in admin.stderr
    text = keys.read_text()
    assert record["key"] not in text and admin.stdout.strip() not in text
    listed = _engram("serve", "key", "list", "--keys", str(keys))
    assert record["id"] in listed.stdout and "user=alice" in listed.stdout and "admin" in listed.stdout
    assert "ek_" not in listed.stdout and "sha256" not in listed.stdout
    assert _engram("serve", "key", "remove", record["id"], "--keys", str(keys)).returncode == 0
    again = _engram("serve", "key", "remove", record["id"], "--keys", str(keys))
    assert again.returncode == 2 and "no key with id" in again.stderr
    assert len(json.loads(_engram("serve", "key", "list", "--keys", str(keys), "--json").stdout)) == 1


def test_serve_refuses_bad_setup_in_one_line(tmp_path: Path) -> None:
    missing = _engram(
        "serve",
        "--db",
        str(tmp_path / "a.db"),
        "--embedder",
        "hash",
        "--api-keys",
        str(tmp_path / "none.json"),
    )
    assert (
        missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    )
    unknown = _engram("serve", "--db", str(tmp_path / "a.db"), "--embedder", "no-such-embedder")
    assert (
        unknown.returncode == 2 and "no-such-embedder" in unknown.stderr and "Traceback" not in unknown.stderr
    )


@pytest.mark.parametrize("host", ["192.0.2.1"])  # TEST-NET-1: never this machine's, so the bind fails
def test_non_loopback_without_keys_warns_loudly(tmp_path: Path, host: str) -> None:
    r = _engram("serve", "--host", host, "--port", "0", "--db", str(tmp_path / "a.db"), "--embedder", "hash")
    assert r.returncode != 0  # nothing was ever served
    assert f"WARNING: binding {host} without API keys" in r.stderr
    assert "auth: off" in r.stderr


def test_loopback_does_not_warn() -> None:
    from engram.cli._serve import _loopback

    assert _loopback("127.0.0.1") and _loopback("localhost") and _loopback("::1") and _loopback("127.3.2.1")
    assert not _loopback("0.0.0.0") and not _loopback("192.168.1.2") and not _loopback("example.com")
