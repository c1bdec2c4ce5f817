"""API keys: hashes at rest, the three header forms, 401/403/404, and scoped keys that never read
or write another scope's memories through any route."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engram.core import Scope
from engram.core.errors import ConfigurationError
from engram.server.rest import KeyStore, create_app, hash_key
from fastapi.testclient import TestClient


@pytest.fixture
def keys(tmp_path: Path) -> tuple[KeyStore, dict[str, str]]:
    store = KeyStore(tmp_path / "keys.json")
    made = {
        "admin": store.add(None, label="ops")[0],
        "alice": store.add(Scope(user_id="alice"))[0],
        "bob": store.add(Scope(user_id="bob"))[0],
        "alice_bot": store.add(Scope(user_id="alice", agent_id="bot"))[0],
    }
    return store, made


@pytest.fixture
def client(tmp_path: Path, keys: tuple[KeyStore, dict[str, str]]) -> Iterator[TestClient]:
    config = {
        "embedder": "hash",
        "vector_store": {"provider": "sqlite", "config": {"path": str(tmp_path / "a.db")}},
    }
    with TestClient(create_app(config, api_keys=keys[0].path)) as c:
        yield c


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _add(c: TestClient, key: str, text: str, **scope: str) -> str:
    r = c.post("/memories", json={"messages": text, "infer": False, **scope}, headers=_h(key))
    assert r.status_code == 200, r.text
    return str(r.json()["results"][0]["id"])


def test_the_file_holds_hashes_only(keys: tuple[KeyStore, dict[str, str]]) -> None:
    store, made = keys
    text = store.path.read_text()
    assert not any(k in text for k in made.values())
    data = json.loads(text)
    assert [k["hash"] for k in data["keys"]] == [hash_key(k) for k in made.values()]
    assert all(k.startswith("ek_") and len(k) == 46 for k in made.values())
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert store.verify(made["alice"]).scope == Scope(user_id="alice")  # type: ignore[union-attr]
    assert store.verify(made["admin"]).admin  # type: ignore[union-attr]
    assert store.verify(made["alice"] + "x") is None and store.verify("") is None


def test_missing_or_wrong_key_is_401(client: TestClient, keys: tuple[KeyStore, dict[str, str]]) -> None:
    assert client.get("/health").json()["auth"] is True  # /health needs no key
    for headers in ({}, _h("ek_not-a-key"), {"Authorization": "Basic abc"}, {"Authorization": "Bearer "}):
        r = client.get("/memories", headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"] == "Bearer"
    doc = client.get("/openapi.json").json()
    assert set(doc["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}


def test_three_header_forms(client: TestClient, keys: tuple[KeyStore, dict[str, str]]) -> None:
    key = keys[1]["alice"]
    for headers in (_h(key), {"Authorization": f"Token {key}"}, {"X-API-Key": key}):
        assert client.get("/memories", headers=headers).status_code == 200


def test_scoped_key_never_sees_another_users_memories(
    client: TestClient, keys: tuple[KeyStore, dict[str, str]]
) -> None:
    made = keys[1]
    a1 = _add(client, made["alice"], "alice likes hiking")  # the key's scope fills in user_id
    b1 = _add(client, made["bob"], "bob's secret plan", user_id="bob")
    b2 = _add(client, made["admin"], "bob's other secret", user_id="bob", agent_id="bot")
    alice = _h(made["alice"])

    def no_bob(r: Any) -> None:
        assert "bob" not in r.text.replace('"bob"', "")  # no bob memory text anywhere in the answer

    listed = client.get("/memories", headers=alice)
    assert [m["id"] for m in listed.json()["results"]] == [a1]
    found = client.post("/search", json={"query": "secret plan"}, headers=alice)
    assert [m["id"] for m in found.json()["results"]] == [a1]
    no_bob(found)
    exported = client.get("/export", headers=alice)
    assert [json.loads(line)["id"] for line in exported.text.splitlines()] == [a1]
    assert client.get("/archive", headers=alice).json() == {"results": []}
    # asking for bob's scope is forbidden, by parameter or inside filters
    for r in (
        client.get("/memories", params={"user_id": "bob"}, headers=alice),
        client.post("/search", json={"query": "plan", "user_id": "bob"}, headers=alice),
        client.post("/search", json={"query": "plan", "filters": {"user_id": "bob"}}, headers=alice),
        client.delete("/memories", params={"user_id": "bob"}, headers=alice),
        client.get("/export", params={"user_id": "bob"}, headers=alice),
        client.get("/graph", params={"user_id": "bob"}, headers=alice),
        client.post("/memories", json={"messages": "x", "user_id": "bob"}, headers=alice),
        client.post("/import", json={"content": '{"memory": "x", "user_id": "bob"}'}, headers=alice),
    ):
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
        no_bob(r)
    # bob's memory ids look like no memory at all
    for mid in (b1, b2):
        for r in (
            client.get(f"/memories/{mid}", headers=alice),
            client.get(f"/memories/{mid}/history", headers=alice),
            client.put(f"/memories/{mid}", json={"text": "pwned"}, headers=alice),
            client.delete(f"/memories/{mid}", headers=alice),
        ):
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
            no_bob(r)
    # importing over bob's id is refused and changes nothing
    line = json.dumps({"id": b1, "memory": "overwritten by alice"})
    r = client.post("/import", json={"content": line}, headers=alice)
    assert r.status_code == 403
    admin = _h(made["admin"])
    assert client.get(f"/memories/{b1}", headers=admin).json()["memory"] == "bob's secret plan"
    assert client.get("/memories", params={"user_id": "bob"}, headers=admin).json()["results"][0]["id"] == b2
    # alice's own delete-all leaves bob alone
    assert client.delete("/memories", headers=alice).json()["deleted"] == 1
    assert len(client.get("/memories", headers=admin).json()["results"]) == 2


def test_narrower_scope_is_allowed_wider_is_not(
    client: TestClient, keys: tuple[KeyStore, dict[str, str]]
) -> None:
    made = keys[1]
    _add(client, made["admin"], "alice, any agent", user_id="alice")
    own = _add(client, made["alice_bot"], "alice with bot")
    bot = _h(made["alice_bot"])
    assert [m["id"] for m in client.get("/memories", headers=bot).json()["results"]] == [own]
    assert (
        client.get("/memories", params={"user_id": "alice", "run_id": "r1"}, headers=bot).status_code == 200
    )
    assert client.get("/memories", params={"agent_id": "other"}, headers=bot).status_code == 403
    # the user-wide key sees both
    assert len(client.get("/memories", headers=_h(made["alice"])).json()["results"]) == 2


def test_reset_needs_an_admin_key(client: TestClient, keys: tuple[KeyStore, dict[str, str]]) -> None:
    made = keys[1]
    _add(client, made["alice"], "keep me")
    r = client.post("/reset", headers=_h(made["alice"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert len(client.get("/memories", headers=_h(made["admin"])).json()["results"]) == 1
    assert client.post("/reset", headers=_h(made["admin"])).status_code == 200
    assert client.get("/memories", headers=_h(made["admin"])).json()["results"] == []


def test_keys_file_changes_apply_without_restart(
    client: TestClient, keys: tuple[KeyStore, dict[str, str]]
) -> None:
    store, made = keys
    alice = _h(made["alice"])
    assert client.get("/memories", headers=alice).status_code == 200
    alice_id = next(k.id for k in store.load() if k.hash == hash_key(made["alice"]))
    writer = KeyStore(store.path)  # what `engram serve key remove` does, from another process
    assert writer.remove(alice_id) and not writer.remove(alice_id)
    assert client.get("/memories", headers=alice).status_code == 401
    new_key, _ = writer.add(Scope(user_id="carol"))
    assert client.get("/memories", headers=_h(new_key)).status_code == 200
    # a broken file keeps the keys read before in force
    store.path.write_text("{broken")
    assert client.get("/memories", headers=_h(new_key)).status_code == 200


def test_bad_keys_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        create_app(None, api_keys=tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    for content, match in (
        ("nope", "not valid JSON"),
        ('{"keys": []}', "not an engram keys file"),
        ('{"version": 1, "keys": [{"id": "k", "hash": "md5:x"}]}', "sha256"),
        (
            '{"version": 1, "keys": [{"id": "k", "hash": "sha256:' + "0" * 64 + '", "user_id": ""}]}',
            "user_id",
        ),
    ):
        bad.write_text(content)
        with pytest.raises(ConfigurationError, match=match):
            KeyStore(bad).load()
