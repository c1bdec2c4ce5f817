"""engram.telemetry's histograms, read back through the SDK's in-memory metric reader."""

from __future__ import annotations

from typing import Any

import pytest
from engram.telemetry import GenAIClient, Telemetry
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[str, dict[str, Any], HistogramDataPoint]]]:
    out: dict[str, list[tuple[str, dict[str, Any], HistogramDataPoint]]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "engram"
            for m in sm.metrics:
                out.setdefault(m.name, []).extend((m.unit, dict(p.attributes), p) for p in m.data.data_points)
    return out


def test_instruments_are_created_once_with_their_units() -> None:
    reader = InMemoryMetricReader()
    tel = Telemetry(meter_provider=MeterProvider(metric_readers=[reader]))
    assert tel.instruments is tel.instruments
    with tel.operation("add"):
        pass
    with pytest.raises(ValueError), tel.operation("add"):
        raise ValueError("bad")
    chat = GenAIClient(tel, "chat", "anthropic", "claude-x")
    with chat.span() as s:
        s.usage(chat, None, 40, None)  # output tokens unknown: not recorded
    got = points(reader)
    ops = got["engram.operation.duration"]
    assert {(u, tuple(sorted(a.items())), p.count) for u, a, p in ops} == {
        ("s", (("engram.operation", "add"),), 1),
        ("s", (("engram.operation", "add"), ("error.type", "ValueError")), 1),
    }
    assert all(p.sum >= 0 for _, _, p in ops)
    ((unit, attrs, p),) = got["gen_ai.client.operation.duration"]
    assert unit == "s" and p.count == 1
    assert attrs == {"gen_ai.operation.name": "chat", "gen_ai.system": "anthropic", "gen_ai.request.model": "claude-x"}
    ((unit, attrs, p),) = got["gen_ai.client.token.usage"]
    assert (unit, p.sum, attrs["gen_ai.token.type"]) == ("{token}", 40, "input")
    # the conventions' bucket advice reaches the SDK
    assert tuple(p.explicit_bounds)[:3] == (1, 4, 16)
