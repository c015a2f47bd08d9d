"""Fixtures of the tests of `miniagents.ext`: spans kept in memory (for the tests of the tracing extra)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def exporter() -> Any:
    """An `InMemorySpanExporter` (the SDK's): the spans of a test, finished."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: Any) -> Any:
    """A `TracerProvider` that hands every ended span to ``exporter`` at once (`SimpleSpanProcessor`)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def observer(provider: Any) -> Any:
    """An `OpenTelemetryObserver` on ``provider``."""
    from miniagents.ext.tracing import OpenTelemetryObserver

    return OpenTelemetryObserver(tracer_provider=provider)
