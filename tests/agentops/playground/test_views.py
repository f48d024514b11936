"""Playground pages: the form gives back exactly what was recorded; admins run, operators
read, viewers do not see it; bad input is named where it entered."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from agentops.models import PlaygroundRun
from tracing import semconv
from tracing.emit import Tracer

pytestmark = pytest.mark.usefixtures("db")

RECORDED = [
    {"role": "system", "content": "You are a test agent.\n\nKnown facts: none."},
    {"role": "user", "content": 'call echo {"text": "ping"}'},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "echo", "arguments": '{"text": "ping"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "ping"},
]
TOOLS = [{"type": "function", "function": {"name": "echo", "parameters": {"type": "object"}}}]


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def recorded_call(dev_agent) -> tuple[uuid.UUID, str]:  # type: ignore[no-untyped-def]
    """A model.call span as the runtime records it (model_client.model_call)."""
    tracer = Tracer(uuid.uuid4(), agent=dev_agent.slug)
    with tracer.span(
        semconv.MODEL_CALL,
        endpoint=dev_agent.endpoint.name,
        purpose="chat",
        **{
            semconv.REQUEST_MODEL: dev_agent.model_name,
            semconv.INPUT_MESSAGES: RECORDED,
            semconv.TOOL_DEFINITIONS: TOOLS,
            semconv.REQUEST_TEMPERATURE: 0.2,
        },
    ) as span:
        span.set(
            **{semconv.OUTPUT_MESSAGES: [{"role": "assistant", "content": "Tool results: ping"}]}
        )
    stored = tracer.flush_now()[0]
    return stored.trace_id, stored.span_id


def posted(response) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The form as the page rendered it, sent back unchanged."""
    data: dict[str, Any] = {}
    form, formset = response.context["form"], response.context["formset"]
    for f in [form, formset.management_form, *formset.forms]:
        for bound in f:
            value = bound.value()
            if value not in (None, False):
                data[bound.html_name] = value
    return data


def test_it_runs_the_recorded_request_unchanged_exactly(alice, devmodel, dev_agent, recorded_call):
    trace_id, span_id = recorded_call
    client = logged_in(alice)
    page = client.get(reverse("playground:open", args=[trace_id, span_id]))
    assert page.status_code == 200
    response = client.post(reverse("playground:open", args=[trace_id, span_id]), posted(page))
    run = PlaygroundRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "playground:run", args=[run.pk]
    )
    received = devmodel.requests(dev_agent.model_name)[-1]["body"]
    assert received["messages"] == RECORDED and received["tools"] == TOOLS
    assert received["temperature"] == 0.2
    side_by_side = client.get(response["Location"]).content.decode()
    assert "Tool results: ping" in side_by_side and 'data-side="rerun"' in side_by_side


def test_it_names_bad_input_and_runs_nothing(alice, recorded_call):
    trace_id, span_id = recorded_call
    client = logged_in(alice)
    data = posted(client.get(reverse("playground:open", args=[trace_id, span_id])))
    data["m-0-extra"] = "{not json"
    data["temperature"] = "7"
    data["tools"] = '[{"type": "function"}]'
    response = client.post(reverse("playground:open", args=[trace_id, span_id]), data)
    assert response.status_code == 400
    assert "Other fields is not valid JSON" in str(response.context["formset"].errors)
    assert "temperature" in response.context["form"].errors
    assert "Tool 1 needs a function with a name" in str(response.context["form"].errors)
    assert not PlaygroundRun.objects.exists()


def test_it_lets_operators_read_and_only_admins_run(bob, charlie, recorded_call):
    trace_id, span_id = recorded_call
    url = reverse("playground:open", args=[trace_id, span_id])
    operator = logged_in(bob)
    page = operator.get(url)
    assert page.status_code == 200 and b"Read-only" in page.content
    assert b'id="playground-run"' not in page.content
    assert operator.post(url, posted(page)).status_code == 403
    assert logged_in(charlie).get(url).status_code == 403
    assert logged_in(charlie).get(reverse("playground:index")).status_code == 403
    assert operator.get(reverse("playground:open", args=[trace_id, "f" * 16])).status_code == 404
    assert not PlaygroundRun.objects.exists()
