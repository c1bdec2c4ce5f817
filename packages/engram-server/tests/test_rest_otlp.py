"""``engram serve --otlp-endpoint``: a real server exports one SERVER span per request, carrying the
caller's trace, with the engine's engram.<op> span below it, to a real OTLP receiver."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from engram.testing.otlp_receiver import OTLPReceiver, otlp_receiver

sys.path.insert(0, str(Path(__file__).parent))
from _rest_server import engram_serve


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    yield from otlp_receiver.__wrapped__()  # type: ignore[attr-defined]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_serve_exports_request_spans(tmp_path: Path, receiver: OTLPReceiver, protocol: str) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    args = ("--otlp-endpoint", receiver.endpoint(protocol), "--otlp-protocol", protocol)
    with engram_serve(tmp_path / "engram.db", *args) as url:
        r = httpx.post(
            f"{url}/memories",
            json={"messages": "I like tea", "user_id": "maya", "infer": False},
            headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
        )
        assert r.status_code == 200
    # the server flushed its spans when it stopped
    [server] = [
        s for s in receiver.wait_for_spans(1, name="POST /memories", timeout=10) if s.kind == "SERVER"
    ]
    assert server.trace_id == trace_id and server.parent_span_id == "00f067aa0ba902b7"
    assert (
        server.attributes["http.route"] == "/memories"
        and server.attributes["http.response.status_code"] == 200
    )
    [op] = receiver.wait_for_spans(1, name="engram.add", timeout=5)
    assert server in receiver.ancestors(op)
