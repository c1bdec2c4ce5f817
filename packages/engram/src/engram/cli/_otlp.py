"""``--otlp-endpoint`` and the ``OTEL_*`` variables: OTLP export for any command.

:func:`start_export` runs for every command (from the root callback) and again in ``engram serve``
and ``engram mcp`` when they get their own ``--otlp-*`` flags. Without an endpoint (flag or
variable) it does nothing and imports nothing from the SDK, so commands start as fast as before.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING

from engram.core.errors import ConfigurationError

if TYPE_CHECKING:
    from engram.telemetry import OTLPExport

__all__ = ["DEFAULT_SERVICE_NAME", "ENDPOINT_VARIABLES", "current_export", "start_export"]

DEFAULT_SERVICE_NAME = "engram"
ENDPOINT_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
)
EXPORT_TIMEOUT = 3.0
"""Seconds one export may take, retries included, unless ``OTEL_EXPORTER_OTLP_TIMEOUT`` (or a
per-signal one) says otherwise: a collector that is down delays a command's exit by at most about
this much per signal (the SDK's own default is 10 s)."""

_lock = threading.Lock()
_export: OTLPExport | None = None


def current_export() -> OTLPExport | None:
    """The export :func:`start_export` started in this process, or ``None``."""
    return _export


def start_export(endpoint: str | None, protocol: str | None) -> None:
    """Turn on OTLP export (traces and metrics) for this process, once.

    Export starts when ``endpoint`` is given or one of :data:`ENDPOINT_VARIABLES` is set, unless
    ``OTEL_SDK_DISABLED=true``. It sets OpenTelemetry's global providers with
    :func:`engram.telemetry.configure_otlp` (service name ``engram`` unless ``OTEL_SERVICE_NAME``
    or ``OTEL_RESOURCE_ATTRIBUTES`` names one), and flushes and shuts down at process exit.

    A later call (``engram serve --otlp-endpoint ...`` after the root callback) is a no-op when it
    asks for nothing different; export cannot move once started (the global providers are set
    once per process).

    Args:
        endpoint: the collector's base URL (``http://127.0.0.1:4318``; for gRPC
            ``http://127.0.0.1:4317``), or ``None`` for the variables.
        protocol: ``"http/protobuf"`` or ``"grpc"``, or ``None`` for ``OTEL_EXPORTER_OTLP_PROTOCOL``
            (default ``http/protobuf``).

    Raises:
        ConfigurationError: a bad endpoint or protocol (flag or variable), ``--otlp-endpoint``
            given without the SDK installed (the message gives ``pip install "engram[otlp]"``;
            when only a variable asks for export, a warning goes to stderr and the command runs
            without export), global providers set by something else, or a second call asking
            for another endpoint or protocol.
    """
    global _export
    with _lock:
        if _export is not None:
            _check_same(_export, endpoint, protocol)
            return
        if endpoint is None and not any(os.environ.get(name, "").strip() for name in ENDPOINT_VARIABLES):
            if protocol is not None:
                raise ConfigurationError(
                    "--otlp-protocol needs an endpoint: give --otlp-endpoint too (or OTEL_EXPORTER_OTLP_ENDPOINT)"
                )
            return
        if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return
        try:
            from engram.telemetry import configure_otlp

            export = configure_otlp(
                endpoint,
                protocol=protocol,
                service_name=None if _service_named_by_variables() else DEFAULT_SERVICE_NAME,
                export_timeout=None if _timeout_set_by_variables() else EXPORT_TIMEOUT,
            )
        except ImportError as exc:
            if endpoint is not None:
                raise ConfigurationError(f"--otlp-endpoint: {exc}") from None
            # Only a variable asked for export (a shell or an operator may set it for every
            # process): the command still runs, without export, and says why once.
            set_by = next(name for name in ENDPOINT_VARIABLES if os.environ.get(name, "").strip())
            sys.stderr.write(f"warning: {set_by} is set but OTLP export is off: {exc}\n")
            return
        except (ValueError, RuntimeError) as exc:
            raise ConfigurationError(f"OTLP export: {exc}") from None
        _export = export  # its own atexit hook exports what is pending and shuts down


def _check_same(export: OTLPExport, endpoint: str | None, protocol: str | None) -> None:
    differs = []
    if endpoint is not None and endpoint.strip().rstrip("/") != export.endpoint.rstrip("/"):
        differs.append(f"endpoint {endpoint}")
    if protocol is not None and protocol != export.protocol:
        differs.append(f"protocol {protocol}")
    if differs:
        raise ConfigurationError(
            f"OTLP export already goes to {export.endpoint} over {export.protocol} in this process; it cannot "
            f"switch to {' and '.join(differs)}. Give --otlp-endpoint/--otlp-protocol once, before the "
            "command (engram --otlp-endpoint URL serve), or set the OTEL_EXPORTER_OTLP_* variables to match."
        )


def _timeout_set_by_variables() -> bool:
    names = (
        "OTEL_EXPORTER_OTLP_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
    )
    return any(os.environ.get(name, "").strip() for name in names)


def _service_named_by_variables() -> bool:
    if os.environ.get("OTEL_SERVICE_NAME", "").strip():
        return True
    pairs = os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
    return any(pair.split("=", 1)[0].strip() == "service.name" for pair in pairs if "=" in pair)
