"""The emission API: nesting, statuses, redaction, one INSERT per flush, broadcast after commit."""

from __future__ import annotations

import uuid

import pytest

from tracing.emit import MAX_ATTRIBUTE_CHARS, Tracer
from tracing.models import Span


def test_it_records_nested_spans_and_events_in_one_insert(db, django_assert_num_queries):
    tracer = Tracer(uuid.uuid4(), agent="alpha")
    with django_assert_num_queries(1):  # the trace's last seq, read once
        with tracer.span("step", step=1) as step:
            with tracer.span("model.call", **{"gen_ai.request.model": "m"}) as call:
                call.set(**{"gen_ai.usage.input_tokens": 3})
            tracer.event("fallback", to="backup")
    with django_assert_num_queries(3):  # SAVEPOINT, one INSERT, RELEASE
        stored = tracer.flush_now()
    assert [s.name for s in stored] == ["model.call", "fallback", "step"]
    assert [s.seq for s in stored] == [1, 2, 3]
    by_name = {s.name: s for s in Span.objects.all()}
    assert (
        by_name["model.call"].parent_span_id == step.span_id == by_name["fallback"].parent_span_id
    )
    assert by_name["model.call"].attributes == {
        "gen_ai.request.model": "m",
        "gen_ai.usage.input_tokens": 3,
    }
    assert (
        by_name["fallback"].is_event
        and by_name["step"].duration_ms >= by_name["model.call"].duration_ms
    )
    assert tracer.flush_now() == []


def test_it_marks_a_failing_span_with_its_class(db):
    from tracing.platform.failures import Failure, FailureClass

    tracer = Tracer(uuid.uuid4())
    with pytest.raises(Failure), tracer.span("tool.call"):
        raise Failure(FailureClass.TIMEOUT, "took too long")
    with pytest.raises(ZeroDivisionError), tracer.span("model.call"):
        1 / 0  # noqa: B018
    timeout, bug = tracer.flush_now()
    assert (timeout.status, timeout.error_class, timeout.error_message) == (
        "error",
        "timeout",
        "took too long",
    )
    assert (
        bug.error_class == "bug" and "ZeroDivisionError" in bug.attributes["exception.stacktrace"]
    )


def test_it_ends_a_span_an_interruption_passes_through_as_ok(db):
    from tracing.platform.failures import Interruption

    class Paused(Interruption):
        outcome = "wait"

    tracer = Tracer(uuid.uuid4())
    with pytest.raises(Paused), tracer.span("step"):
        raise Paused("approval needed")
    (step,) = tracer.flush_now()
    assert (step.status, step.error_class, step.attributes) == ("ok", "", {"outcome": "wait"})


def test_it_keeps_a_run_status_as_an_attribute(db):
    tracer = Tracer(uuid.uuid4())
    tracer.event("run.status", status="running", step=0)
    tracer.event("run.status", status="failed", error_class="timeout", error_message="slow")
    tracer.event(
        "tool.rejected", status="error", error_class="invalid_request", error_message="bad"
    )
    running, failed, rejected = tracer.flush_now()
    assert (running.status, running.attributes) == ("ok", {"status": "running", "step": 0})
    assert (failed.status, failed.error_class, failed.attributes["status"]) == (
        "error",
        "timeout",
        "failed",
    )
    assert (rejected.status, rejected.error_class, rejected.attributes) == (
        "error",
        "invalid_request",
        {},
    )


def test_it_redacts_secrets_and_truncates_long_values(db):
    tracer = Tracer(uuid.uuid4(), secrets_to_redact=["sk-abcdef123456"])
    tracer.add_secret("tok-987654321")
    with tracer.span(
        "tool.call",
        arguments={"q": "with sk-abcdef123456 inside", "api_key": "plain"},
        result="x" * 5000,
        header="Bearer tok-987654321",
        **{"gen_ai.usage.input_tokens": 7},
    ):
        pass
    (span,) = tracer.flush_now()
    text = str(span.attributes)
    assert "sk-abcdef123456" not in text and "tok-987654321" not in text and "plain" not in text
    assert span.attributes["arguments"]["api_key"] == "[REDACTED]"
    assert span.attributes["gen_ai.usage.input_tokens"] == 7
    assert len(span.attributes["result"]) < MAX_ATTRIBUTE_CHARS + 50


def test_it_continues_the_sequence_of_a_resumed_trace(db):
    trace_id = uuid.uuid4()
    first = Tracer(trace_id)
    first.event("run.status", status="running")
    first.flush_now()
    second = Tracer(trace_id)  # another worker resumes the run
    second.event("run.status", status="running")
    assert [s.seq for s in second.flush_now()] == [2]


def test_it_stores_an_error_message_holding_a_nul_character(db):
    tracer = Tracer(uuid.uuid4())
    with pytest.raises(RuntimeError), tracer.span("tool.call", result="a\x00b"):
        raise RuntimeError("bad\x00byte")
    (span,) = tracer.flush_now()
    span.refresh_from_db()
    assert span.error_message == "bad\ufffdbyte" and span.attributes["result"] == "a\ufffdb"


def test_it_keeps_a_model_calls_content_whole_with_secrets_redacted(db):
    """The playground reopens a call from these: no per-text cut, no name-based redaction
    (a tool parameter called max_tokens is a schema, not a secret); known secrets replaced."""
    from tracing import semconv
    from tracing.emit import REDACTED, span_to_event

    tracer = Tracer(uuid.uuid4(), secrets_to_redact=["sk-the-endpoint-key"])
    long_text = "word " * 1000  # over MAX_ATTRIBUTE_CHARS
    tools = [
        {
            "type": "function",
            "function": {
                "name": "search",
                "parameters": {"type": "object", "properties": {"max_tokens": {"type": "integer"}}},
            },
        }
    ]
    messages = [
        {"role": "system", "content": long_text},
        {"role": "user", "content": "my key is sk-the-endpoint-key, a\x00b"},
    ]
    with tracer.span(
        "model.call",
        **{semconv.INPUT_MESSAGES: messages, semconv.TOOL_DEFINITIONS: tools, "api_key": "x1234"},
    ):
        pass
    span = tracer.flush_now()[0]
    stored = Span.objects.get(pk=span.pk).attributes
    assert stored[semconv.INPUT_MESSAGES][0]["content"] == long_text
    assert stored[semconv.INPUT_MESSAGES][1]["content"] == f"my key is {REDACTED}, a\ufffdb"
    assert stored[semconv.TOOL_DEFINITIONS] == tools
    assert stored["api_key"] == REDACTED  # other attributes are redacted by name as before
    assert semconv.CONTENT_TRUNCATED not in stored
    # Streams carry no content (it is large); the API asks for it.
    assert semconv.INPUT_MESSAGES not in span_to_event(span)["attributes"]
    assert span_to_event(span, content=True)["attributes"][semconv.TOOL_DEFINITIONS] == tools


def test_it_bounds_a_model_calls_content_to_the_setting(db, settings):
    from tracing import semconv

    settings.TRACE_CONTENT_MAX_CHARS = 3000
    tracer = Tracer(uuid.uuid4())
    messages = [{"role": "user", "content": "x" * 5000}, {"role": "user", "content": "short"}]
    with tracer.span("model.call", **{semconv.INPUT_MESSAGES: messages}):
        pass
    stored = tracer.flush_now()[0].attributes
    kept = stored[semconv.INPUT_MESSAGES]
    assert stored[semconv.CONTENT_TRUNCATED] is True
    assert len(str(kept)) <= 3000 and kept[1]["content"] == "short"
    assert kept[0]["content"].startswith("xxx") and "more chars" in kept[0]["content"]
    settings.TRACE_CONTENT_MAX_CHARS = 0
    with tracer.span("model.call", **{semconv.INPUT_MESSAGES: messages}):
        pass
    assert semconv.INPUT_MESSAGES not in tracer.flush_now()[0].attributes
