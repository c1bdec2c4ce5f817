"""examples/tracing.py runs end to end offline: by default it starts its own OTLP receiver on 127.0.0.1;
given a collector (--endpoint, or OTEL_EXPORTER_OTLP_ENDPOINT) it exports there (here: a receiver
this test runs) and prints the tree from its own copy."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from engram.testing.otlp_receiver import OTLPReceiver

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tracing.py"

TREE = [
    "engram.add  [INTERNAL]",
    "  embeddings  [CLIENT]",
    "  engram.vector_store.write  [CLIENT]",
    "engram.add  [INTERNAL]",
    "  embeddings  [CLIENT]",
    "  engram.vector_store.write  [CLIENT]",
    "engram.search  [INTERNAL]",
]


def _run(*args: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ENGRAM_"))}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), *args], capture_output=True, text=True, timeout=120, env={**clean, **env}
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _tree(out: str) -> list[str]:
    """The tree's lines without durations and attributes."""
    return [re.sub(r"\] [\d.]+ ms.*$", "]", line) for line in out.split("\n\n", 2)[-1].splitlines() if line]


def _span_count(out: str) -> int:
    found = re.search(r"sent (\d+) spans in 3 traces to ", out)
    assert found, out
    return int(found.group(1))


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_self_contained(protocol: str) -> None:
    out = _run("--protocol", protocol, "--attributes")
    assert re.search(rf"exporting to http://127\.0\.0\.1:\d+ over {protocol} \(a receiver this script started\)", out)
    assert "service engram-tracing-example" in out
    n = _span_count(out)
    assert f"the receiver decoded {n} spans, and engram.operation.duration (s) for add x2, search x1" in out
    tree = _tree(out)
    assert tree[: len(TREE)] == TREE and len(tree) == n
    assert all(line.startswith("  ") and "[CLIENT]" in line for line in tree[len(TREE):])
    assert "engram.operation='search'" in out and "engram.scope.kind='user'" in out  # --attributes


def test_to_a_given_collector() -> None:
    with OTLPReceiver() as collector:
        url = collector.http_endpoint
        out = _run("--endpoint", url)
        n = _span_count(out)
        assert collector.wait_for_spans(n, timeout=5)
    assert f"exporting to {url} over http/protobuf (your collector)" in out
    assert f"to {url}/v1/traces" in out and "the span tree as sent:" in out
    assert _tree(out)[: len(TREE)] == TREE and len(_tree(out)) == n == len(collector.spans)
    assert {s.resource["service.name"] for s in collector.spans} == {"engram-tracing-example"}


def test_to_the_collector_in_the_variables() -> None:
    with OTLPReceiver() as collector:
        url = collector.grpc_endpoint
        out = _run(OTEL_EXPORTER_OTLP_ENDPOINT=url, OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                   OTEL_SERVICE_NAME="from-env")
        n = _span_count(out)
        assert collector.wait_for_spans(n, timeout=5)
    assert f"exporting to {url} over grpc (your collector), service from-env" in out
    assert {s.transport for s in collector.spans} == {"grpc"}


def test_a_bad_endpoint_is_one_error_line() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE), "--endpoint", "localhost:4318"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("error: the endpoint argument must be an http:// or https:// URL")
