"""``engram --otlp-endpoint URL <command>`` and the OTEL_* variables: real ``python -m engram.cli``
processes export their spans and metrics to a real OTLP receiver on 127.0.0.1 (HTTP and gRPC), and
start_export's rules (no endpoint: nothing, not even an SDK import; once per process; errors as
ConfigurationError)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from engram.cli import _otlp
from engram.core.errors import ConfigurationError
from engram.testing.otlp_receiver import OTLPReceiver, ReceivedSpan, otlp_receiver


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    yield from otlp_receiver.__wrapped__()  # type: ignore[attr-defined]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The developer's ENGRAM_* and OTEL_* variables left out; a fresh database and the hash embedder."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ENGRAM_", "OTEL_"))}
    return clean | {
        "ENGRAM_DB": str(tmp_path / "cli.db"),
        "ENGRAM_EMBEDDER": "hash",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "NO_COLOR": "1",
    }


def _engram(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "engram.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _operation_tree(receiver: OTLPReceiver, op: str) -> tuple[ReceivedSpan, list[ReceivedSpan]]:
    """The ``engram.<op>`` span and every span below it; each checked to be in its trace."""
    [root] = receiver.wait_for_spans(1, name=f"engram.{op}", timeout=5)
    below = [s for s in receiver.spans if root in receiver.ancestors(s)]
    assert all(s.trace_id == root.trace_id for s in below)
    return root, below


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_add_exports_its_span_tree(receiver: OTLPReceiver, env: dict[str, str], protocol: str) -> None:
    endpoint = receiver.endpoint(protocol)
    _engram(
        "--otlp-endpoint",
        endpoint,
        "--otlp-protocol",
        protocol,
        "add",
        "I drink green tea",
        "-u",
        "maya",
        env=env,
    )
    # the process has exited: its exit hook exported everything before that
    root, below = _operation_tree(receiver, "add")
    assert root.parent_span_id is None and root.kind == "INTERNAL"
    assert root.attributes["engram.operation"] == "add"
    assert root.attributes["engram.scope.kind"] == "user"
    assert root.attributes["engram.results.count"] == 1
    assert "maya" not in repr(root.attributes)  # scope ids are never exported
    names = {s.name for s in below}
    assert any(n.startswith("embeddings") for n in names)
    assert "engram.vector_store.write" in names
    assert all(s.kind == "CLIENT" for s in below)
    assert root.resource["service.name"] == "engram"
    assert {s.transport for s in receiver.spans} == {"grpc" if protocol == "grpc" else "http"}
    [duration] = receiver.wait_for_metric(
        "engram.operation.duration", where=lambda p: p.attributes.get("engram.operation") == "add", timeout=5
    )
    assert (duration.unit, duration.count) == ("s", 1)


def test_search_exports_its_span_tree(receiver: OTLPReceiver, env: dict[str, str]) -> None:
    _engram("add", "I drink green tea", "-u", "maya", env=env)  # no endpoint: nothing exported
    assert receiver.requests == []
    _engram("--otlp-endpoint", receiver.http_endpoint, "search", "what do I drink?", "-u", "maya", env=env)
    root, below = _operation_tree(receiver, "search")
    assert root.attributes["engram.operation"] == "search"
    assert root.attributes["engram.results.count"] == 1
    assert "dense" in root.attributes["engram.search.paths"]
    names = {s.name for s in below}
    assert "engram.vector_store.search" in names
    assert any(n.startswith("embeddings") for n in names)


def test_the_variables_alone_turn_export_on(receiver: OTLPReceiver, env: dict[str, str]) -> None:
    env |= {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_SERVICE_NAME": "my-memory",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-team=memory",
    }
    _engram("add", "I drink green tea", "-u", "maya", env=env)
    root, _ = _operation_tree(receiver, "add")
    assert (root.transport, root.resource["service.name"], root.headers["x-team"]) == (
        "grpc",
        "my-memory",
        "memory",
    )


def _python(code: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_without_an_endpoint_nothing_is_imported(env: dict[str, str]) -> None:
    out = _python(
        """
        import sys
        from engram.cli._otlp import current_export, start_export
        start_export(None, None)
        assert current_export() is None
        print(sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter", "grpc"))))
        """,
        env,
    )
    assert out.strip() == "[]"


def test_once_per_process(receiver: OTLPReceiver, env: dict[str, str]) -> None:
    out = _python(
        """
        import sys
        from engram.cli._otlp import current_export, start_export
        from engram.core.errors import ConfigurationError
        start_export(URL, None)
        first = current_export()
        start_export(None, None)            # the root callback again: nothing changes
        start_export(URL + "/", "http/protobuf")  # the same, said differently
        assert current_export() is first
        for endpoint, protocol in (("http://127.0.0.1:1", None), (None, "grpc")):
            try:
                start_export(endpoint, protocol)
            except ConfigurationError as exc:
                print("refused:", exc)
        """.replace("URL", repr(receiver.http_endpoint)),
        env,
    )
    assert out.count(f"refused: OTLP export already goes to {receiver.http_endpoint} over http/protobuf") == 2
    assert "cannot switch to endpoint http://127.0.0.1:1" in out and "cannot switch to protocol grpc" in out


@pytest.fixture
def no_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process checks of start_export's refusals: none of them may start an export here."""
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(_otlp, "_export", None)


@pytest.mark.parametrize(
    ("endpoint", "protocol", "message"),
    [
        ("127.0.0.1:4318", None, "OTLP export: the endpoint argument must be an http:// or https:// URL"),
        ("http://127.0.0.1:4318", "udp", "OTLP export: protocol must be one of http/protobuf, grpc"),
        ("http://127.0.0.1:4318/v1/traces", None, "base URL"),
        (None, "grpc", "--otlp-protocol needs an endpoint"),
    ],
)
@pytest.mark.usefixtures("no_export")
def test_bad_input_is_a_configuration_error(endpoint: str | None, protocol: str | None, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _otlp.start_export(endpoint, protocol)
    assert _otlp.current_export() is None


@pytest.mark.usefixtures("no_export")
def test_missing_sdk_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    with pytest.raises(ConfigurationError, match=r'--otlp-endpoint: .*pip install "engram\[otlp\]"'):
        _otlp.start_export("http://127.0.0.1:4318", None)
    assert _otlp.current_export() is None


@pytest.mark.usefixtures("no_export")
def test_a_variable_without_the_sdk_warns_and_the_command_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shell or an operator may set OTEL_EXPORTER_OTLP_ENDPOINT for every process: on a plain
    ``pip install engram`` (no SDK) commands must still run, saying once why nothing is exported."""
    for name in list(sys.modules):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    _otlp.start_export(None, None)
    assert _otlp.current_export() is None
    err = capsys.readouterr().err
    assert err.startswith("warning: OTEL_EXPORTER_OTLP_ENDPOINT is set but OTLP export is off")
    assert 'pip install "engram[otlp]"' in err and "--otlp-endpoint" not in err


@pytest.mark.usefixtures("no_export")
def test_sdk_disabled_turns_export_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    _otlp.start_export("http://127.0.0.1:4318", None)
    assert _otlp.current_export() is None


def test_a_bad_endpoint_is_one_error_line(env: dict[str, str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engram.cli", "--otlp-endpoint", "localhost:4318", "add", "x", "-u", "maya"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode != 0 and proc.stdout == ""
    assert "must be an http:// or https:// URL" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error:"), proc.stderr
