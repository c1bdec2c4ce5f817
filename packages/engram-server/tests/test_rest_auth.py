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
    # importing with bob's id stores alice's memory under another id and leaves bob's alone
    line = json.dumps({"id": b1, "memory": "overwritten by alice"})
    r = client.post("/import", json={"content": line}, headers=alice)
    assert r.status_code == 200 and r.json()["imported"] == 1
    admin = _h(made["admin"])
    assert client.get(f"/memories/{b1}", headers=admin).json()["memory"] == "bob's secret plan"
    assert client.get("/memories", params={"user_id": "bob"}, headers=admin).json()["results"][0]["id"] == b2
    # alice's own delete-all leaves bob alone
    assert client.delete("/memories", headers=alice).json()["deleted"] == 2
    assert len(client.get("/memories", headers=admin).json()["results"]) == 2


def test_import_ids_tell_nothing_and_reach_no_other_scope(
    client: TestClient, keys: tuple[KeyStore, dict[str, str]]
) -> None:
    from engram.core import WriteBatch

    made = keys[1]
    alice, admin = _h(made["alice"]), _h(made["admin"])
    b_active = _add(client, made["bob"], "bob's active memory")
    b_archived = _add(client, made["bob"], "bob's archived memory")
    store = client.app.state.memory.vector_store  # type: ignore[attr-defined]
    client.portal.call(store.write, WriteBatch(archive=[(b_archived, "superseded")]))  # type: ignore[union-attr]
    assert client.get(f"/memories/{b_archived}", headers=admin).status_code == 404  # archived only
    own = _add(client, made["alice"], "alice's own")

    def import_(mid: str, text: str) -> dict[str, Any]:
        r = client.post("/import", json={"content": json.dumps({"id": mid, "memory": text})}, headers=alice)
        assert r.status_code == 200, r.text
        return dict(r.json())

    # an id used (active or only archived) in another scope and one used nowhere: the same answer
    answers = [import_(mid, "alice's import") for mid in (b_active, b_archived, "never-used")]
    assert answers[0] == answers[1] == answers[2]
    mine = {m["id"]: m["memory"] for m in client.get("/memories", headers=alice).json()["results"]}
    assert len(mine) == 4 and mine[own] == "alice's own"
    assert not {b_active, b_archived, "never-used"} & set(mine)  # each got an id of alice's own
    # importing the same lines again replaces them (the ids are derived, not random)
    for mid in (b_active, b_archived, "never-used"):
        import_(mid, "alice's import, again")
    again = {m["id"]: m["memory"] for m in client.get("/memories", headers=alice).json()["results"]}
    assert set(again) == set(mine) and list(again.values()).count("alice's import, again") == 3
    # an id already alice's is kept
    import_(own, "alice's own, replaced")
    assert client.get(f"/memories/{own}", headers=alice).json()["memory"] == "alice's own, replaced"
    # deleting what alice imported leaves every version of bob's alone
    for mid in again:
        assert client.delete(f"/memories/{mid}", headers=alice).status_code == 200
    assert client.get(f"/memories/{b_active}", headers=admin).json()["memory"] == "bob's active memory"
    archived = client.get("/archive", params={"user_id": "bob"}, headers=admin).json()["results"]
    assert [(m["id"], m["memory"]) for m in archived] == [(b_archived, "bob's archived memory")]


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
    # a file replaced by one of the same size and modification time (a new inode) is read again
    bob = _h(made["bob"])
    assert client.get("/memories", headers=bob).status_code == 200
    text = store.path.read_text().replace(hash_key(made["bob"]), hash_key("ek_" + "x" * 43))
    old = store.path.stat()
    assert len(text.encode()) == old.st_size  # bob's key swapped for another: the same size
    other = store.path.with_name("other.json")
    other.write_text(text)
    os.utime(other, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(other, store.path)  # a new inode with the old size and modification time
    assert client.get("/memories", headers=bob).status_code == 401
    assert client.get("/memories", headers=_h("ek_" + "x" * 43)).status_code == 200


def _refused(r: Any) -> None:
    assert r.status_code == 503 and r.json()["error"]["code"] == "configuration_error", r.text
    assert "keys file" in r.json()["error"]["message"] and "keys.json" not in r.text  # no path to clients


def test_a_keys_file_that_breaks_refuses_every_key(
    client: TestClient, keys: tuple[KeyStore, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    store, made = keys
    admin, alice = _h(made["admin"]), _h(made["alice"])
    good = store.path.read_bytes()
    assert client.get("/memories", headers=alice).status_code == 200
    store.path.write_text("{broken")  # malformed
    for h in (admin, alice):
        _refused(client.get("/memories", headers=h))
    assert "cannot be used" in caplog.text and "not valid JSON" in caplog.text
    store.path.write_bytes(good)  # fixed: the keys work again
    assert client.get("/memories", headers=alice).status_code == 200
    store.path.unlink()  # deleted
    _refused(client.get("/memories", headers=admin))
    assert "does not exist" in caplog.text
    store.path.write_text('{"version": 1, "keys": [{"id": "k"}]}')  # valid JSON, not a keys file
    _refused(client.get("/memories", headers=admin))
    store.path.write_bytes(good)
    assert client.get("/memories", headers=admin).status_code == 200
    if os.geteuid() != 0:  # root reads a file whatever its mode
        store.path.chmod(0)  # unreadable
        _refused(client.get("/memories", headers=admin))
        store.path.chmod(0o600)
        assert client.get("/memories", headers=admin).status_code == 200


def test_keys_file_is_0600_even_over_a_leftover_temporary_file(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    leftover = tmp_path / "keys.json.tmp"
    leftover.write_text("old")
    leftover.chmod(0o644)
    store.add(None)
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600 and not leftover.exists()


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
