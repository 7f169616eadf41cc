"""Where the gateway's spans go.

A process that configured OpenTelemetry itself (``opentelemetry-instrument moe serve``, an
application embedding the gateway, a test with an in-memory exporter) has a global SDK tracer
provider: spans go there, next to every other library's, and the gateway adds no exporter of its
own, which would send each span twice. Otherwise the gateway builds a provider for itself from
the ``otel`` section and the standard ``OTEL_*`` variables, and shuts it down (flushing what is
queued) when it closes.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)

from moe_core import ConfigError
from moe_otel.config import OTelConfig

DEFAULT_SERVICE_NAME = "moe"


def global_provider() -> trace.TracerProvider | None:
    """The process's own tracer provider, if something configured one."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider


def own_provider(config: OTelConfig) -> TracerProvider | None:
    """A provider exporting as ``config`` and the environment say; ``None`` for ``none``."""
    exporter_name = config.exporter or os.environ.get("OTEL_TRACES_EXPORTER", "otlp")
    exporter_name = exporter_name.split(",")[0].strip().lower() or "otlp"
    if exporter_name == "none":
        return None
    name = config.service_name or os.environ.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    if exporter_name == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        provider.add_span_processor(BatchSpanProcessor(otlp_exporter(config, exporter_name)))
    return provider


def otlp_exporter(config: OTelConfig, name: str) -> SpanExporter:
    if name != "otlp":
        raise ConfigError(f"otel.exporter: {name!r} is not one of otlp, console, none")
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError(
            "otel.exporter: otlp needs the OTLP exporter: pip install 'moe-otel[otlp]' (or set "
            "otel.exporter: console or none)"
        ) from None
    # Without an endpoint the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT and headers.
    return OTLPSpanExporter(endpoint=config.endpoint)
