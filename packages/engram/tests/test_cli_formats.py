"""The import formats: LoCoMo conversations and engram's JSON lines, parsed without a store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from engram.cli._formats import (
    detect_format,
    item_to_json,
    normalize_evidence,
    parse_file,
    parse_jsonl,
    parse_locomo,
    parse_locomo_date,
)
from engram.core import MemoryItem, Scope, content_hash
from engram.core.errors import InvalidInputError


def locomo_sample(sample_id: str = "conv-x") -> dict:
    return {
        "sample_id": sample_id,
        "conversation": {
            "speaker_a": "Caroline",
            "speaker_b": "Melanie",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Caroline", "dia_id": "D1:1", "text": "Hey Mel! Good to see you!"},
                {
                    "speaker": "Melanie",
                    "dia_id": "D1:2",
                    "text": "Look at this mural!",
                    "img_url": ["https://example.org/mural.jpg"],
                    "blip_caption": "a photo of a mural",
                    "query": "pride mural",
                },
                {"speaker": "Caroline", "dia_id": "D1:3"},  # no text: skipped
                "not a turn",  # skipped
                {"dia_id": "D1:5", "text": "who said this?"},  # no speaker: skipped
            ],
            "session_2_date_time": "12:09 am on 13 September, 2023",
            "session_2": [{"speaker": "Melanie", "dia_id": "D2:1", "text": "Back from camping."}],
            "session_3_date_time": "sometime in spring",
            "session_3": [{"speaker": "Caroline", "dia_id": "D3:1", "text": "Undated turn."}],
            "session_4_date_time": "10:00 am on 1 June, 2023",  # a date without a session: ignored
        },
        "qa": [],
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1:56 pm on 8 May, 2023", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("12:09 am on 13 September, 2023", datetime(2023, 9, 13, 0, 9, tzinfo=UTC)),
        ("12:30 pm on 1 January, 2024", datetime(2024, 1, 1, 12, 30, tzinfo=UTC)),
        ("9:05 AM on 3 Sept, 2022", datetime(2022, 9, 3, 9, 5, tzinfo=UTC)),
        ("10:37 am on 27 June, 2023", datetime(2023, 6, 27, 10, 37, tzinfo=UTC)),
        ("2023-05-08T13:56:00", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("sometime in spring", None),
        ("1:56 pm on 31 February, 2023", None),
        ("13:56 pm on 8 May, 2023", None),
        ("", None),
    ],
)
def test_locomo_dates(text: str, expected: datetime | None) -> None:
    assert parse_locomo_date(text) == expected


def test_evidence_ids_are_normalised() -> None:
    assert normalize_evidence(["D8:6; D9:17"]) == ["D8:6", "D9:17"]
    assert normalize_evidence(["D:11:26"]) == ["D11:26"]
    assert normalize_evidence(["D30:05"]) == ["D30:5"]
    assert normalize_evidence(["D9:1 D4:4 D4:6", "D4:4"]) == ["D9:1", "D4:4", "D4:6"]
    assert normalize_evidence("D1:3") == ["D1:3"]
    assert normalize_evidence([None, "garbage", 7]) == []


def test_locomo_turns_become_memories() -> None:
    parsed = parse_locomo(locomo_sample(), source="f.json")
    assert parsed.format == "locomo"
    texts = [r.item.memory for r in parsed.records]
    assert texts == ["Hey Mel! Good to see you!", "Look at this mural!", "Back from camping.", "Undated turn."]
    assert parsed.records[0].item.hash == content_hash("Hey Mel! Good to see you!")
    first, image, camping, undated = (r.item for r in parsed.records)
    assert first.user_id == "conv-x" and first.agent_id is None and first.run_id is None
    assert first.metadata["dia_id"] == "D1:1"
    assert first.metadata["session"] == 1
    assert first.metadata["speaker"] == "Caroline"
    assert first.metadata["role"] == "user"
    assert first.metadata["message_time"] == "2023-05-08T13:56:00+00:00"
    assert first.metadata["session_date"] == "1:56 pm on 8 May, 2023"
    assert first.hash == content_hash(first.memory)
    assert image.metadata["blip_caption"] == "a photo of a mural"
    assert image.metadata["img_url"] == ["https://example.org/mural.jpg"]
    assert "blip_caption" not in first.metadata
    assert camping.metadata["message_time"] == "2023-09-13T00:09:00+00:00"
    assert camping.metadata["session"] == 2
    assert "message_time" not in undated.metadata
    # conversation order survives a newest-first listing
    assert first.created_at < image.created_at < camping.created_at
    # three malformed turns and one unreadable date, each with a warning
    assert parsed.skipped == 3
    assert sum("skipped" in w for w in parsed.warnings) == 3
    assert any("unreadable date" in w for w in parsed.warnings)
    assert any("turn 3" in w and "text" in w for w in parsed.warnings)


def test_locomo_scope_given_wins_and_ids_are_stable() -> None:
    a = parse_locomo([locomo_sample("c1"), locomo_sample("c2")])
    assert {r.item.user_id for r in a.records} == {"c1", "c2"}
    b = parse_locomo([locomo_sample("c1"), locomo_sample("c2")])
    assert [r.item.id for r in a.records] == [r.item.id for r in b.records]
    scoped = parse_locomo(locomo_sample("c1"), scope=Scope(user_id="me", run_id="r1"))
    assert {(r.item.user_id, r.item.run_id) for r in scoped.records} == {("me", "r1")}
    assert {r.item.id for r in scoped.records}.isdisjoint(r.item.id for r in a.records)


def test_locomo_without_conversation_is_an_error() -> None:
    with pytest.raises(InvalidInputError):
        parse_locomo([{"sample_id": "x"}])
    parsed = parse_locomo([{"sample_id": "x"}, locomo_sample()])
    assert parsed.skipped == 1 + 3 and parsed.records


def test_detect_format() -> None:
    assert detect_format(json.dumps(locomo_sample())) == "locomo"
    assert detect_format(json.dumps([locomo_sample()])) == "locomo"
    assert detect_format('{"memory": "a", "user_id": "u"}\n{"memory": "b", "user_id": "u"}\n') == "jsonl"
    assert detect_format('{"memory": "a", "user_id": "u"}') == "jsonl"
    assert detect_format("") == "jsonl"


def test_jsonl_round_trip_of_an_item() -> None:
    item = MemoryItem(
        id="m1",
        memory="Maya lives in Portland",
        hash=content_hash("Maya lives in Portland"),
        user_id="maya",
        run_id="r9",
        metadata={"k": [1, 2], "speaker": "Maya"},
        created_at=datetime(2025, 4, 1, 12, 0, 0, 123456, tzinfo=UTC),
        updated_at=datetime(2025, 4, 2, tzinfo=UTC),
    )
    line = json.dumps(item_to_json(item))
    (rec,) = parse_jsonl(line).records
    back = rec.item
    for field in (
        "id",
        "memory",
        "hash",
        "user_id",
        "agent_id",
        "run_id",
        "metadata",
        "created_at",
        "updated_at",
    ):
        assert getattr(back, field) == getattr(item, field), field


def test_jsonl_fills_in_and_skips() -> None:
    text = "\n".join(
        [
            json.dumps({"memory": "no scope, takes the command line's"}),
            json.dumps({"text": "own scope", "agent_id": "bot"}),
            "{not json",
            json.dumps(["a list"]),
            json.dumps({"memory": ""}),
            json.dumps({"memory": "bad hash", "user_id": "u", "hash": "0000"}),
            "",
        ]
    )
    parsed = parse_jsonl(text, scope=Scope(user_id="cli-user"), source="in.jsonl")
    items = [r.item for r in parsed.records]
    assert [i.memory for i in items] == ["no scope, takes the command line's", "own scope", "bad hash"]
    assert items[0].user_id == "cli-user"
    assert items[1].agent_id == "bot" and items[1].user_id is None
    assert items[2].hash == content_hash("bad hash")
    assert all(i.id for i in items)
    assert parsed.skipped == 3
    assert any(w.startswith("in.jsonl:3:") for w in parsed.warnings)
    assert any("hash does not match" in w for w in parsed.warnings)


def test_jsonl_without_any_scope_is_skipped() -> None:
    with pytest.raises(InvalidInputError, match="no line could be imported"):
        parse_jsonl(json.dumps({"memory": "orphan"}))


def test_parse_file_dispatch() -> None:
    assert parse_file(json.dumps(locomo_sample())).format == "locomo"
    assert parse_file(json.dumps({"memory": "x", "user_id": "u"}), "jsonl").format == "jsonl"
    with pytest.raises(InvalidInputError):
        parse_file("{nope", "locomo")
