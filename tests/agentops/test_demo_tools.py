"""The demo tools, driven by the dev model's `chain` command without the crash-test tools."""

from __future__ import annotations

import pytest

from agentops.models import Message, Role, RunStatus, ToolCall
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import wait_for_run
from tools.models import ToolDefinition
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)

DEMO_TOOLS = {"echo", "get_time", "add", "pause"}


@pytest.fixture
def session(dev_agent):
    python_tools_sync()
    dev_agent.tools.add(*ToolDefinition.objects.filter(name__in=DEMO_TOOLS))
    return session_create(agent=dev_agent, external_user="erin")


def tool_results(session) -> list[str]:
    return list(
        Message.objects.filter(session=session, role=Role.TOOL)
        .order_by("seq")
        .values_list("content", flat=True)
    )


def test_it_chains_the_slow_demo_tool(worker, session):
    run = wait_for_run(session_post_message(session=session, content="chain 2 pause 0.3").pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert tool_results(session) == ["paused 0.3 s (1)", "paused 0.3 s (2)"]
    calls = ToolCall.objects.filter(run=run).order_by("step")
    assert [(c.tool_name, c.status, c.arguments) for c in calls] == [
        ("pause", "succeeded", {"seconds": 0.3, "label": "1"}),
        ("pause", "succeeded", {"seconds": 0.3, "label": "2"}),
    ]


@pytest.mark.parametrize(
    ("tool", "expected"),
    [("echo", ["1", "2"]), ("add", ["2", "4"]), ("get_time", None)],
)
def test_it_chains_a_demo_tool_with_arguments_it_accepts(worker, session, tool, expected):
    run = wait_for_run(session_post_message(session=session, content=f"chain 2 {tool}").pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert list(
        ToolCall.objects.filter(run=run).order_by("step").values_list("status", flat=True)
    ) == [
        "succeeded",
        "succeeded",
    ]
    if expected is not None:
        assert tool_results(session) == expected


def test_it_tells_the_model_when_the_pause_is_too_long(worker, session):
    run = session_post_message(session=session, content='call pause {"seconds": 90}')
    run = wait_for_run(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    (result,) = tool_results(session)
    assert "seconds must be between 0 and 30, not 90" in result
