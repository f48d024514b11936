from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from django import template

from tracing.selectors import alerts_firing

register = template.Library()
DASH = "\u2013"  # an en dash for "no value"


@register.filter
def ms(value: float | str | None) -> str:
    """A duration in milliseconds, readable ("850 ms", "2.4 s", "3 min 5 s")."""
    if value is None or value == "":
        return DASH
    value = float(value)
    if value < 1:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, seconds = divmod(int(value // 1000), 60)
    return f"{minutes} min {seconds} s"


@register.filter
def elapsed(start: datetime | None, end: datetime | Literal[""] | None) -> str:
    """The time from `start` to `end` (datetimes), as `ms` writes it."""
    if start is None or end is None or end == "":
        return DASH
    return ms((end - start).total_seconds() * 1000)


@register.filter
def pct(value: float | str | None, digits: int = 1) -> str:
    if value is None or value == "":
        return DASH
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def money(value: Decimal | float | str | None) -> str:
    if value is None or value == "":
        return DASH
    value = Decimal(value)
    if 0 < value < Decimal("0.0001"):
        return "<$0.0001"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


@register.filter
def ratio(value: float | None) -> str:
    return DASH if value is None else f"{float(value):.2f}"


@register.filter
def filesize(value: float | None) -> str:
    size = float(value or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


@register.filter
def pretty_json(value: object) -> str:
    """JSON for a <pre>; the template escapes it like any other text."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


@register.filter
def detail_text(value: object) -> str:
    """A detail mapping as people read it: `key: value` pairs, strings bare, anything nested
    as compact JSON (never a Python repr). The template escapes it like any other text."""
    if not isinstance(value, dict):
        return (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        )

    def one(item: object) -> str:
        if isinstance(item, str):
            return item
        return json.dumps(item, ensure_ascii=False, default=str)

    return "; ".join(f"{key}: {one(item)}" for key, item in value.items())


@register.filter
def attr(mapping: object, key: str) -> object:
    """mapping[key] for keys with dots (span attributes)."""
    return mapping.get(key, "") if isinstance(mapping, dict) else ""


@register.inclusion_tag("tracing/alert_banner.html", takes_context=True)
def alert_banner(context: template.Context, alerts_url: str, refresh_url: str) -> dict[str, Any]:
    """Firing alerts for anyone holding a role; refreshed by htmx from `refresh_url`."""
    firing = list(alerts_firing()) if context.get("role") else []
    return {
        "firing": firing,
        "alerts_url": alerts_url,
        "refresh_url": refresh_url,
        "show": bool(context.get("role")),
    }
