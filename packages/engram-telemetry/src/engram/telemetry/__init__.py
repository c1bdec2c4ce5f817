"""engram telemetry: spans and metrics over the OpenTelemetry API, OTLP export behind engram[otlp].

Library code imports the OpenTelemetry API only. :func:`get_telemetry` gives the
:class:`Telemetry` that engram's engine writes to: the API's global tracer and meter providers by
default, or the providers an application passes (``AsyncMemory(..., tracer_provider=...,
meter_provider=...)``). ``configure_otlp`` and ``OTLPExport`` (export over OTLP; they need
``engram[otlp]``) are imported from ``engram.telemetry._otlp`` on first access, so importing this
package never imports the SDK. docs/telemetry.md lists every span, attribute and metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._attributes import *  # noqa: F403 - the attribute-name constants are part of the API
from ._attributes import __all__ as _attribute_names
from ._core import (
    GenAIClient,
    GenAISpan,
    Instruments,
    SpanScope,
    Telemetry,
    current_llm_task,
    error_type,
    get_telemetry,
    llm_task,
    scope_version,
)

if TYPE_CHECKING:
    from ._otlp import OTLPExport, configure_otlp

__all__ = [
    "GenAIClient",
    "GenAISpan",
    "Instruments",
    "OTLPExport",
    "SpanScope",
    "Telemetry",
    "configure_otlp",
    "current_llm_task",
    "error_type",
    "get_telemetry",
    "llm_task",
    "scope_version",
    *_attribute_names,
]

_LAZY = ("OTLPExport", "configure_otlp")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import _otlp

        value = getattr(_otlp, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
