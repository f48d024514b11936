"""Console pages: sessions, sending, roles, escaping of untrusted text."""

from __future__ import annotations

import pytest
from django.test import Client

from agentops.models import Message, Role, Run, RunStatus, Session, SessionStatus, ToolCall
from agentops.runtime.checkpoint import messages_append
from tests.factories import AgentFactory, SessionFactory

pytestmark = pytest.mark.django_db(transaction=True)

XSS = "<img src=x onerror=alert(1)> <script>alert(1)</script>"


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_it_starts_a_session_for_an_operator(bob):
    agent = AgentFactory(slug="support", name="Support")
    response = client_for(bob).post(
        "/console/sessions/new", {"agent": "support", "external_user": "erin", "title": "Refund"}
    )
    session = Session.objects.get()
    assert (
        response.status_code == 302 and response["Location"] == f"/console/sessions/{session.pk}/"
    )
    assert session.agent == agent and session.external_user == "erin" and session.created_by == bob


def test_it_names_the_bad_field_when_starting_a_session(bob):
    AgentFactory(slug="support")
    response = client_for(bob).post("/console/sessions/new", {"agent": "nope"})
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert not Session.objects.exists()


def test_it_lets_viewers_read_but_not_write(charlie):
    session = SessionFactory()
    client = client_for(charlie)
    assert client.get("/console/").status_code == 200
    page = client.get(f"/console/sessions/{session.pk}/").content.decode()
    assert "You can read this conversation" in page and "Send</button>" not in page
    assert client.post(f"/console/sessions/{session.pk}/send", {"content": "hi"}).status_code == 403
    assert client.post("/console/sessions/new", {"agent": session.agent.slug}).status_code == 403
    assert not Message.objects.exists()


def test_it_searches_sessions_by_user_title_and_id(charlie):
    a = SessionFactory(external_user="erin@example.com", title="Billing")
    b = SessionFactory(external_user="frank", title="Shipping question")
    client = client_for(charlie)
    by_user = client.get("/console/", {"q": "erin"}).content.decode()
    assert str(a.pk) in by_user and str(b.pk) not in by_user
    by_title = client.get("/console/", {"q": "shipping"}, HTTP_HX_REQUEST="true").content.decode()
    assert str(b.pk) in by_title and str(a.pk) not in by_title
    by_id = client.get("/console/", {"q": str(a.pk)[:8]}).content.decode()
    assert str(a.pk) in by_id
    none = client.get("/console/", {"q": "zzz-nobody"}).content.decode()
    assert "No sessions match" in none


def test_it_shows_empty_states(bob):
    page = client_for(bob).get("/console/").content.decode()
    assert "No agents yet" in page and "No sessions yet" in page
    session = SessionFactory()
    assert (
        "No messages yet"
        in client_for(bob).get(f"/console/sessions/{session.pk}/").content.decode()
    )


def test_it_posts_a_message_and_starts_a_run(bob):
    session = SessionFactory()
    response = client_for(bob).post(
        f"/console/sessions/{session.pk}/send", {"content": "hello"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and response["X-Send-Status"] == "200"
    message = Message.objects.get(session=session)
    assert message.role == Role.USER and message.author == bob
    assert Run.objects.get(session=session).trigger == message


def test_it_explains_why_a_message_was_not_sent(bob):
    session = SessionFactory()
    Run.objects.create(session=session, agent=session.agent, status=RunStatus.RUNNING)
    busy = client_for(bob).post(
        f"/console/sessions/{session.pk}/send", {"content": "again"}, HTTP_HX_REQUEST="true"
    )
    assert busy["X-Send-Status"] == "409"
    said = busy.content.decode()
    assert "The agent is still answering the last message" in said and "run " not in said
    empty = client_for(bob).post(
        f"/console/sessions/{session.pk}/send", {"content": "   "}, HTTP_HX_REQUEST="true"
    )
    assert empty["X-Send-Status"] == "400" and "Write something first." in empty.content.decode()
    assert not Message.objects.exists()


def test_it_passes_messages_to_the_operator_when_handed_off(bob):
    session = SessionFactory(status=SessionStatus.HANDED_OFF)
    response = client_for(bob).post(
        f"/console/sessions/{session.pk}/send", {"content": "still there?"}, HTTP_HX_REQUEST="true"
    )
    assert "your message was passed on" in response.content.decode()
    assert not Run.objects.exists() and Message.objects.filter(session=session).count() == 1


def test_it_escapes_model_tool_and_user_text(bob):
    session = SessionFactory(external_user=XSS)
    messages_append(
        session_id=session.pk,
        messages=[
            Message(role=Role.USER, content=XSS),
            Message(
                role=Role.ASSISTANT,
                tool_calls=[
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {
                            "name": "echo",
                            "arguments": '{"text": "<script>alert(2)</script>"}',
                        },
                    }
                ],
            ),
            Message(role=Role.TOOL, tool_call_id="c1", content=XSS),
            Message(role=Role.ASSISTANT, content=XSS),
        ],
    )
    page = client_for(bob).get(f"/console/sessions/{session.pk}/").content.decode()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_it_shows_tool_calls_inline_with_status_and_duration(charlie):
    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.SUCCEEDED)
    messages_append(
        session_id=session.pk,
        messages=[
            Message(role=Role.USER, content='call echo {"text": "ping"}'),
            Message(
                role=Role.ASSISTANT,
                run=run,
                tool_calls=[
                    {
                        "id": "c9",
                        "type": "function",
                        "function": {"name": "echo", "arguments": '{"text": "ping"}'},
                    }
                ],
            ),
            Message(role=Role.TOOL, run=run, tool_call_id="c9", content="ping"),
            Message(role=Role.ASSISTANT, run=run, content="Tool results: ping"),
        ],
    )
    from datetime import timedelta

    call = ToolCall.objects.create(
        run=run, step=1, call_id="c9", tool_name="echo", status="succeeded"
    )
    ToolCall.objects.filter(pk=call.pk).update(
        finished_at=call.started_at + timedelta(milliseconds=42)
    )
    client = client_for(charlie)
    page = client.get(f"/console/sessions/{session.pk}/").content.decode()
    assert 'data-call-id="c9"' in page and "42 ms" in page and "status-succeeded" in page
    assert f"/runs/{run.pk}/" in page
    states = client.get(f"/console/sessions/{session.pk}/tool-calls").json()["tool_calls"]
    assert states == {"c9": {"status": "succeeded", "duration_ms": 42, "tool": "echo"}}


def test_it_times_each_tool_call_from_its_start_to_its_end(worker, dev_agent, charlie):
    """Calls of an idempotent tool are stored with the step's checkpoint, after they ran."""
    from agentops.runtime.services import session_create, session_post_message
    from tests.agentops.runtime.helpers import wait_for_run
    from tools.models import ToolDefinition
    from tools.services import python_tools_sync

    python_tools_sync()
    dev_agent.tools.add(ToolDefinition.objects.get(name="pause"))
    session = session_create(agent=dev_agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content="chain 2 pause 0.2").pk)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    run_ms = (run.finished_at - run.started_at).total_seconds() * 1000
    client = client_for(charlie)
    states = client.get(f"/console/sessions/{session.pk}/tool-calls").json()["tool_calls"]
    durations = [s["duration_ms"] for s in states.values()]
    assert len(durations) == 2
    assert all(200 <= d <= run_ms for d in durations), (durations, run_ms)
    page = client.get(f"/console/sessions/{session.pk}/").content.decode()
    for d in durations:
        assert f"{d} ms" in page or f"{d / 1000:.2f} s" in page


def _items(html: str) -> dict[str, str]:
    import re

    return {
        seq: li
        for li, seq in re.findall(r'(<li class="msg [^"]*" data-seq="(\d+)">.*?</li>)', html, re.S)
    }


def test_it_renders_live_messages_with_the_first_paints_markup(charlie):
    session = SessionFactory(external_user=XSS)
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.RUNNING)
    messages_append(
        session_id=session.pk,
        messages=[
            Message(role=Role.USER, content=XSS),
            Message(
                role=Role.ASSISTANT,
                run=run,
                tool_calls=[
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "echo", "arguments": "{}"},
                    }
                ],
            ),
        ],
    )
    client = client_for(charlie)
    url = f"/console/sessions/{session.pk}/items"
    assert _items(client.get(url, {"after": 2}).content.decode()) == {}
    pending = client.get(url, {"after": 2, "call": "c1"}).content.decode()
    assert list(_items(pending)) == ["2"] and "status-started" in pending
    messages_append(
        session_id=session.pk,
        messages=[
            Message(role=Role.TOOL, run=run, tool_call_id="c1", content=XSS),
            Message(role=Role.ASSISTANT, run=run, content=XSS),
        ],
    )
    live = client.get(url, {"after": 2}).content.decode()
    assert list(_items(live)) == ["2", "4"]  # the call whose result came, and the answer
    assert "<script>alert" not in live and "<img src=x" not in live
    assert "&lt;img src=x onerror=alert(1)&gt;" in live
    page = _items(client.get(f"/console/sessions/{session.pk}/").content.decode())
    assert list(page) == ["1", "2", "4"]
    assert _items(live) == {"2": page["2"], "4": page["4"]}  # one renderer
    assert client.get(url, {"after": "x"}).status_code == 400
