"""Settings of the tracing app, read from Django settings or else the environment.

A malformed value stops the process with one sentence naming the variable (checked
when the app loads, see `TracingConfig.ready`).
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def _value(name: str, default: Any) -> Any:
    if hasattr(settings, name):
        return getattr(settings, name)
    return os.environ.get(name, "").strip() or default


def _int(name: str, default: int, minimum: int) -> int:
    raw = _value(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}.")
    return value


def trace_retention_days() -> int:
    """Days spans are kept (per agent: `RetentionOverride`)."""
    return _int("TRACE_RETENTION_DAYS", 30, 1)


def minute_rollup_retention_days() -> int:
    return _int("METRICS_MINUTE_RETENTION_DAYS", 3, 1)


def hour_rollup_retention_days() -> int:
    return _int("METRICS_RETENTION_DAYS", 400, 1)


def retention_batch_size() -> int:
    return _int("RETENTION_BATCH_SIZE", 5000, 1)


def trace_content_max_chars() -> int:
    """Characters of a model call's messages, tools and output kept on its span (0: none)."""
    return _int("TRACE_CONTENT_MAX_CHARS", 200_000, 0)


def metrics_token() -> str:
    """Bearer token for the Prometheus endpoint (an API key works too)."""
    return str(_value("METRICS_TOKEN", ""))


def otlp_endpoint() -> str:
    return str(_value("OTEL_EXPORTER_OTLP_ENDPOINT", ""))


def check() -> None:
    for fn in (
        trace_retention_days,
        minute_rollup_retention_days,
        hour_rollup_retention_days,
        retention_batch_size,
        trace_content_max_chars,
    ):
        fn()
    endpoint = otlp_endpoint()
    if endpoint and not endpoint.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f"OTEL_EXPORTER_OTLP_ENDPOINT must start with http:// or https://, not {endpoint!r}."
        )
    token = metrics_token()
    if token and len(token) < 16:
        raise ImproperlyConfigured("METRICS_TOKEN must be at least 16 characters long.")
