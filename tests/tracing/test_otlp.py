"""Stored spans exported over OTLP/HTTP to a loopback collector, with the same ids."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.kit import until
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


def exported_span_ids(collector: Receiver) -> set[str]:
    ids = set()
    for _, _, body in list(collector.requests):
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                ids.update(span.span_id.hex() for span in scope_spans.spans)
    return ids


def wait_for_export(collector: Receiver, expected: set[str], seconds: float = 20) -> set[str]:
    """The span ids the collector has received, once it has all of `expected`."""
    return until(
        lambda: expected <= (got := exported_span_ids(collector)) and got,
        seconds=seconds,
        message=lambda: f"exported {exported_span_ids(collector)}, wanted {expected}",
    )


@pytest.mark.django_db(transaction=True)
def test_it_exports_every_stored_span_of_a_run_from_a_forking_worker(dev_agent):
    """The work horse exits with os._exit right after its job; nothing may stay queued."""
    import redis
    from rq import Queue

    from agentops.embedded import redis_url
    from agentops.models import Message, Role, Run, RunStatus
    from agentops.runtime.checkpoint import messages_append
    from agentops.runtime.services import session_create
    from agentops.testing.processes import child_env, start_worker
    from tests.agentops.runtime.helpers import wait_for_run
    from tools.services import python_tools_sync
    from tracing.models import Span

    dev_agent.tools.add(*python_tools_sync())
    # A Redis database of its own, so the suite's shared worker cannot take this run.
    url = redis_url(9)
    queue = Queue("runs", connection=redis.Redis.from_url(url))
    queue.connection.flushdb()
    server = Receiver()
    worker = start_worker(
        child_env(OTEL_EXPORTER_OTLP_ENDPOINT=server.url, REDIS_URL=url), name="otlp-worker"
    )
    try:
        session = session_create(agent=dev_agent, external_user="erin")
        (message,) = messages_append(
            session_id=session.pk,
            messages=[Message(role=Role.USER, content='call echo {"text": "ping"}')],
        )
        run = Run.objects.create(session=session, agent=dev_agent, trigger=message)
        queue.enqueue("agentops.jobs.run_job", str(run.pk), job_timeout=60)
        assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
        stored = set(Span.objects.filter(trace_id=run.pk).values_list("span_id", flat=True))
        assert len(stored) >= 10
        assert wait_for_export(server, stored) == stored, worker.output()[-3000:]
    finally:
        worker.stop()
        server.stop()
        queue.connection.flushdb()


def test_it_exports_what_is_queued_when_the_process_exits():
    import subprocess
    import sys

    from agentops.testing.processes import PROJECT_DIR

    server = Receiver()
    script = """
import uuid
from datetime import UTC, datetime
from tracing import otlp
from tracing.models import Span

now = datetime.now(UTC)
otlp.export([
    Span(trace_id=uuid.uuid4(), seq=1, span_id="00000000000000a1", name="step",
         start_time=now, end_time=now, duration_ms=0, attributes={})
])
"""
    try:
        import os

        env = dict(os.environ, OTEL_EXPORTER_OTLP_ENDPOINT=server.url)
        subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", script],
            cwd=PROJECT_DIR,
            env=env,
            check=True,
            timeout=60,
        )
        assert exported_span_ids(server) == {"00000000000000a1"}
    finally:
        server.stop()
