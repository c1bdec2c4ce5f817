"""engram telemetry: spans and metrics over the OpenTelemetry API, OTLP export behind engram[otlp]."""

__all__: list[str] = []
