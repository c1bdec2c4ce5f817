"""``--otlp-endpoint`` and the ``OTEL_*`` variables: OTLP export for any command."""

from __future__ import annotations


def start_export(endpoint: str | None, protocol: str | None) -> None:
    """Turn on OTLP export for this process (placeholder until engram-telemetry lands)."""
    if endpoint is not None:
        raise NotImplementedError("OTLP export is being built (issue 6)")
