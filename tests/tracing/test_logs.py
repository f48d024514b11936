"""Every log line inside a request carries request_id; inside a run, the run's ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tracing.platform.logs import bind_context, formatter, get_logger


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Capture what the root logger writes, formatted as in production (JSON lines)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter("json"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def parsed(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_it_tags_every_line_of_a_request_with_its_request_id(client, charlie, json_lines):
    client.force_login(charlie)  # outside a request (its own log lines have no request to name)
    json_lines.seek(0)
    json_lines.truncate()
    client.get("/runs/")
    client.get("/runs/00000000-0000-0000-0000-000000000000/")  # 404: Django logs a warning
    lines = parsed(json_lines)
    events = [line["event"] for line in lines]
    assert "request_started" in events and "request_finished" in events
    assert any(line["logger"] == "django.request" for line in lines), events
    assert all(line.get("request_id") for line in lines), lines
    first = {line["request_id"] for line in lines[: events.index("request_finished") + 1]}
    assert len(first) == 1, "one id per request"
    assert len({line["request_id"] for line in lines}) == 2


def test_it_tags_every_line_of_a_run_with_the_run_ids(json_lines):
    ids = {"trace_id": "t-1", "run_id": "t-1", "session_id": "s-1", "agent": "alpha"}
    with bind_context(**ids):
        get_logger("agentops.runtime").info("run.step", step=1)
        logging.getLogger("some.library").warning("plain stdlib line")
        try:
            raise KeyError("boom")
        except KeyError:
            get_logger("agentops.runtime").exception("run.failed", error_class="bug")
    get_logger("agentops.runtime").info("after the run")
    *inside, after = parsed(json_lines)
    assert len(inside) == 3
    for line in inside:
        assert {k: line.get(k) for k in ids} == ids, line
    failed = inside[2]
    assert failed["error_class"] == "bug" and "KeyError: 'boom'" in failed["exception"]
    assert "run_id" not in after


def test_it_writes_readable_lines_in_development():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("there",), None)
    line = formatter("console").format(record)
    assert "hello there" in line and not line.startswith("{")
