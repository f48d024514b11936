"""Tools the demo agent can use."""

from __future__ import annotations

import time
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


PAUSE_MAX_SECONDS = 30.0


@python_tool(
    description="Wait the given number of seconds (at most 30), then say so. Changes nothing; "
    "useful to watch a run while a tool call is in progress."
)
def pause(seconds: float = 1.0, label: str = "") -> str:
    if not 0 <= seconds <= PAUSE_MAX_SECONDS:
        raise ValueError(f"seconds must be between 0 and {PAUSE_MAX_SECONDS:g}, not {seconds:g}.")
    time.sleep(seconds)
    return f"paused {seconds:g} s" + (f" ({label})" if label else "")
