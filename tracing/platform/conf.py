"""Settings of the tracing app, read from Django settings.

The project's settings module reads and checks the environment (agentops/settings.py, the
one place that does); the defaults here are for a project that sets none of these, so the
floor stays usable without them. No value is parsed here.
"""

from __future__ import annotations

from django.conf import settings


def trace_retention_days() -> int:
    """Days spans are kept (per agent: `RetentionOverride`)."""
    return int(getattr(settings, "TRACE_RETENTION_DAYS", 30))


def minute_rollup_retention_days() -> int:
    return int(getattr(settings, "METRICS_MINUTE_RETENTION_DAYS", 3))


def hour_rollup_retention_days() -> int:
    return int(getattr(settings, "METRICS_RETENTION_DAYS", 400))


def retention_batch_size() -> int:
    return int(getattr(settings, "RETENTION_BATCH_SIZE", 5000))


def trace_content_max_chars() -> int:
    """Characters of a model call's messages, tools and output kept on its span (0: none)."""
    return int(getattr(settings, "TRACE_CONTENT_MAX_CHARS", 200_000))


def metrics_token() -> str:
    """Bearer token for the Prometheus endpoint (an API key works too)."""
    return str(getattr(settings, "METRICS_TOKEN", ""))


def otlp_endpoint() -> str:
    return str(getattr(settings, "OTEL_EXPORTER_OTLP_ENDPOINT", ""))


def otlp_traces_endpoint() -> str:
    """The traces URL; unset: `otlp_endpoint()` + /v1/traces."""
    return str(getattr(settings, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""))


def otlp_service_name() -> str:
    return str(getattr(settings, "OTEL_SERVICE_NAME", "") or "agentops")
