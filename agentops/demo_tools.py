"""Tools the demo agent can use."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tools.registry import python_tool


@python_tool(description="Repeat the given text back. Useful to test tool calling.")
def echo(text: str) -> str:
    return text


@python_tool(description="The current date and time in an IANA time zone such as Europe/Paris.")
def get_time(timezone: str = "UTC") -> str:
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"Unknown time zone {timezone!r}; use an IANA name like Europe/Paris."
        ) from None
    return datetime.now(UTC).astimezone(zone).isoformat(timespec="seconds")


@python_tool(description="Add two numbers.")
def add(a: float, b: float) -> float:
    return a + b
