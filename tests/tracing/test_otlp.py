"""Stored spans exported over OTLP/HTTP to a loopback collector, with the same ids."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.tracing.helpers import Receiver
from tracing import otlp
from tracing.emit import Tracer


@pytest.fixture
def collector(settings):
    server = Receiver()
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = server.url
    yield server
    otlp.shutdown()
    server.stop()


def exported(collector: Receiver) -> dict[str, object]:
    assert otlp.force_flush(10)  # returns once queued spans are converted and POSTed
    spans = {}
    for path, headers, body in collector.requests:
        assert path == "/v1/traces" and headers["content-type"] == "application/x-protobuf"
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans[span.name] = span
    return spans


def attributes(span) -> dict[str, object]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def test_it_exports_committed_spans_with_their_ids_and_attributes(
    db, collector, django_capture_on_commit_callbacks
):
    import uuid

    run_id = uuid.uuid4()
    tracer = Tracer(run_id, agent="alpha", secrets_to_redact=["sk-live-123456"])
    with django_capture_on_commit_callbacks(execute=True):
        with tracer.span("step", step=1) as step:
            with tracer.span(
                "model.call",
                **{
                    "gen_ai.request.model": "m",
                    "gen_ai.usage.input_tokens": 12,
                    "prompt": "key sk-live-123456",
                },
            ):
                pass
            with pytest.raises(KeyError), tracer.span("tool.call", **{"gen_ai.tool.name": "echo"}):
                raise KeyError("boom")
            tracer.event("fallback", to="backup")
        stored = {s.name: s for s in tracer.flush_now()}
    spans = exported(collector)
    assert set(spans) == {"step", "model.call", "tool.call", "fallback"}
    for name, span in spans.items():
        assert span.trace_id == run_id.bytes, name
        assert span.span_id.hex() == stored[name].span_id
    assert spans["model.call"].parent_span_id.hex() == step.span_id
    assert spans["step"].parent_span_id == b""
    model = attributes(spans["model.call"])
    assert model["gen_ai.usage.input_tokens"] == 12 and model["agent"] == "alpha"
    assert "sk-live-123456" not in str(model) and "[REDACTED]" in model["prompt"]
    tool = spans["tool.call"]
    assert tool.status.code == 2 and attributes(tool)["error.type"] == "bug"  # STATUS_CODE_ERROR
    assert attributes(spans["fallback"])["agentops.event"] is True
    assert spans["fallback"].start_time_unix_nano == spans["fallback"].end_time_unix_nano


def test_it_exports_nothing_that_was_rolled_back(db, collector, django_capture_on_commit_callbacks):
    import uuid

    from django.db import transaction

    tracer = Tracer(uuid.uuid4())
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            with tracer.span("model.call"):
                pass
            tracer.flush()
            raise RuntimeError("rolled back")
    assert exported(collector) == {}


def test_it_stays_off_without_an_endpoint(settings):
    settings.OTEL_EXPORTER_OTLP_ENDPOINT = ""
    assert not otlp.enabled()
