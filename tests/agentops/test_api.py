import json
import logging
import subprocess
import sys
import threading
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agentops.auth import api_key_create
from agentops.models import (
    Agent,
    AgentVersion,
    ApiKey,
    Message,
    Role,
    Run,
    RunStatus,
    Session,
    ToolCall,
    ToolCallStatus,
)
from agentops.runtime.checkpoint import messages_append
from agentops.webhooks.services import EVENT_TYPES, webhook_endpoint_create
from tests.agentops.operators.helpers import make_handoff
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import AgentFactory, SessionFactory, UserFactory
from tests.kit import bearer as auth

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_refuses_requests_without_credentials(client):
    response = client.post("/api/sessions", {"agent": "x"}, content_type="application/json")
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]


def test_it_refuses_a_wrong_key(client, bob_key):
    response = client.get("/api/handoffs", **auth(bob_key + "x"))
    assert response.status_code == 401


def test_it_needs_the_operator_role_to_write(client, charlie):
    key = api_key_create(user=charlie, name="t")[1]
    response = client.post(
        "/api/sessions", {"agent": "x"}, content_type="application/json", **auth(key)
    )
    assert response.status_code == 403
    assert client.get("/api/handoffs", **auth(key)).status_code == 200


def test_it_names_the_field_of_invalid_input(client, bob_key):
    response = client.post(
        "/api/sessions", {"user": "u"}, content_type="application/json", **auth(bob_key)
    )
    assert response.status_code == 422
    assert response.json()["field"] == "agent"
    response = client.post(
        "/api/sessions", "{not json", content_type="application/json", **auth(bob_key)
    )
    assert 400 <= response.status_code < 500


def test_it_names_an_unknown_agent(client, bob_key):
    response = client.post(
        "/api/sessions", {"agent": "nope"}, content_type="application/json", **auth(bob_key)
    )
    assert response.status_code == 404
    assert response.json()["error"].startswith("agent:")


def test_it_drives_a_conversation(client, bob_key, dev_agent, worker):
    created = client.post(
        "/api/sessions",
        {"agent": dev_agent.slug, "user": "erin"},
        content_type="application/json",
        **auth(bob_key),
    )
    assert created.status_code == 201
    session_id = created.json()["id"]
    posted = client.post(
        f"/api/sessions/{session_id}/messages",
        {"content": "hello"},
        content_type="application/json",
        **auth(bob_key),
    )
    assert posted.status_code == 202
    run_id = posted.json()["run"]
    wait_for_run(run_id)
    run = client.get(f"/api/runs/{run_id}", **auth(bob_key)).json()
    assert run["status"] == "succeeded" and run["steps"] == 1 and run["error"] is None
    messages = client.get(f"/api/sessions/{session_id}/messages", **auth(bob_key)).json()[
        "messages"
    ]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    trace = client.get(f"/api/runs/{run_id}/trace", **auth(bob_key)).json()["spans"]
    assert [s["seq"] for s in trace] == sorted(s["seq"] for s in trace)
    assert any(s["name"] == "model.call" for s in trace)


def test_it_refuses_a_second_message_while_a_run_is_active(client, bob_key, db):
    session = SessionFactory()
    Run.objects.create(session=session, agent=session.agent, status=RunStatus.RUNNING)
    response = client.post(
        f"/api/sessions/{session.pk}/messages",
        {"content": "again"},
        content_type="application/json",
        **auth(bob_key),
    )
    assert response.status_code == 409
    assert "still answering the last message" in response.json()["error"]
    assert session.messages.count() == 0


def _post_message(client: Client, key: str, session_id: object, content: str = "hello") -> Any:
    return client.post(
        f"/api/sessions/{session_id}/messages",
        {"content": content},
        content_type="application/json",
        **auth(key),
    )


def _published_agent() -> Agent:
    agent = AgentFactory()
    agent.published_version = AgentVersion.objects.create(agent=agent, number=1, config={})
    agent.save(update_fields=["published_version"])
    return agent


def test_a_message_post_costs_a_fixed_number_of_queries(client, bob_key):
    """The key with its user and roles; in the post's transaction the session's lock, the
    active-run check, the message and the run; once that is committed, the dispatch (one
    statement: the agent's lock and the sends). None more for each webhook endpoint, each run
    of the agent or each message of the conversation."""
    agent = _published_agent()
    first, second = SessionFactory(agent=agent), SessionFactory(agent=agent)
    assert _post_message(client, bob_key, SessionFactory(agent=agent).pk).status_code == 202
    with CaptureQueriesContext(connection) as few:
        assert _post_message(client, bob_key, first.pk).status_code == 202
    for n in range(3):
        webhook_endpoint_create(url=f"https://hooks.example.com/{n}", event_types=EVENT_TYPES)
        busy = SessionFactory(agent=agent)
        Run.objects.create(session=busy, agent=agent, status=RunStatus.RUNNING)
        held = SessionFactory(agent=agent)
        Run.objects.create(
            session=held, agent=agent, status=RunStatus.QUEUED, enqueued_at=timezone.now()
        )
        messages_append(
            session_id=second.pk,
            messages=[
                Message(role=Role.USER, content=f"question {n}"),
                Message(role=Role.ASSISTANT, content=f"answer {n}"),
            ],
        )
    with CaptureQueriesContext(connection) as many:
        assert _post_message(client, bob_key, second.pk).status_code == 202
    statements = [query["sql"][:80] for query in many]
    assert len(many) == len(few) <= 9, statements  # BEGIN and COMMIT counted
    # The dispatch (the agent's lock) comes after the post's COMMIT, never inside it.
    dispatch = next(i for i, sql in enumerate(statements) if "agentops_runs_dispatch" in sql)
    assert "COMMIT" in statements[:dispatch], statements
    assert Run.objects.filter(agent=agent, status=RunStatus.QUEUED, job_id="").count() == 0


def test_a_request_does_not_wait_on_its_keys_row(client, bob):
    """An idempotent POST holds its key's row locked to its end (its last use is written in
    its transaction): the burst's other requests with that key must not queue behind it."""
    key = api_key_create(user=bob, name="burst")[1]
    row = ApiKey.objects.get(user=bob, name="burst")
    locked, answered, outcome = threading.Event(), threading.Event(), {}

    def hold_the_row() -> None:
        with transaction.atomic():
            ApiKey.objects.select_for_update().get(pk=row.pk)
            locked.set()
            outcome["released_by_the_answer"] = answered.wait(timeout=30)
        connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert locked.wait(timeout=30)
    try:
        response = client.get("/api/handoffs", **auth(key))
    finally:
        answered.set()
        holder.join()
    assert response.status_code == 200
    assert outcome["released_by_the_answer"], "the request waited for the key's row"
    row.refresh_from_db()
    assert row.last_used_at is None  # skipped while locked; the next request writes it
    assert client.get("/api/handoffs", **auth(key)).status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_it_answers_404_to_a_message_for_no_session(client, bob_key, db):
    response = _post_message(client, bob_key, "00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404 and response.json() == {"error": "not found"}


def test_it_rejects_empty_content_and_keeps_the_conversation(client, bob_key, db):
    session = SessionFactory()
    response = client.post(
        f"/api/sessions/{session.pk}/messages",
        {"content": ""},
        content_type="application/json",
        **auth(bob_key),
    )
    assert response.status_code == 422 and response.json()["field"] == "content"


def test_it_answers_404_in_json(client, bob_key):
    response = client.get("/api/runs/00000000-0000-0000-0000-000000000000", **auth(bob_key))
    assert response.status_code == 404 and response.json() == {"error": "not found"}
    response = client.get("/api/runs/not-a-uuid", **auth(bob_key))
    assert 400 <= response.status_code < 500


def test_it_cancels_and_retries_runs(client, bob_key, db):
    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.WAITING)
    response = client.post(f"/api/runs/{run.pk}/cancel", **auth(bob_key))
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert client.post(f"/api/runs/{run.pk}/cancel", **auth(bob_key)).status_code == 409
    response = client.post(f"/api/runs/{run.pk}/retry", **auth(bob_key))
    assert response.status_code == 202 and response.json()["status"] == "queued"


def test_it_accepts_session_auth_with_csrf(bob, dev_agent):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(bob)
    response = browser.post(
        "/api/sessions", {"agent": dev_agent.slug}, content_type="application/json"
    )
    assert response.status_code == 403  # no CSRF token
    browser.get("/account/")
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        "/api/sessions",
        {"agent": dev_agent.slug},
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert response.status_code == 201
    assert Session.objects.filter(pk=response.json()["id"]).exists()


def test_it_publishes_an_openapi_schema(client, db):
    schema = client.get("/api/openapi.json").json()
    assert "/api/sessions/{session_id}/messages" in schema["paths"]
    assert UserFactory  # the factory module is importable for API clients' fixtures


@pytest.mark.parametrize("field", ["agent", "user", "title"])
def test_it_refuses_a_nul_byte_naming_the_field(client, bob_key, dev_agent, field):
    body = {"agent": dev_agent.slug, field: "bad\x00value"}
    response = client.post("/api/sessions", body, content_type="application/json", **auth(bob_key))
    assert response.status_code == 422, response.content
    assert response.json()["field"] == field
    assert "NUL" in response.json()["error"]
    assert not Session.objects.exists()


def test_it_refuses_a_nul_byte_in_a_message_and_keeps_the_conversation(client, bob_key, db):
    session = SessionFactory()
    response = client.post(
        f"/api/sessions/{session.pk}/messages",
        {"content": "hi\x00"},
        content_type="application/json",
        **auth(bob_key),
    )
    assert response.status_code == 422 and response.json()["field"] == "content"
    assert not Message.objects.filter(session=session).exists()


def test_it_takes_a_message_that_spells_a_special_token_as_plain_text(client, bob_key, db):
    """A user may write what looks like the model's control tokens: it is text, counted as
    text, never a server error."""
    session = SessionFactory(agent=_published_agent())
    content = "what does <|endoftext|> mean? and <|fim_prefix|>?"
    response = _post_message(client, bob_key, session.pk, content)
    assert response.status_code == 202, response.content
    message = Message.objects.get(session=session)
    assert message.content == content and message.token_count > 10


def test_it_answers_413_in_json_to_a_body_over_the_limit(client, bob_key, dev_agent):
    body = json.dumps({"agent": dev_agent.slug, "title": "x" * 10_000_000})
    response = client.post("/api/sessions", body, content_type="application/json", **auth(bob_key))
    assert response.status_code == 413
    assert "too large" in response.json()["error"]
    assert not Session.objects.exists()


def test_it_answers_401_to_an_invalid_key_on_a_post(bob_key, dev_agent):
    api_client = Client(enforce_csrf_checks=True)  # like any client that is not Django's
    for key in (bob_key + "x", "not-a-key"):
        response = api_client.post(
            "/api/sessions", {"agent": dev_agent.slug}, content_type="application/json", **auth(key)
        )
        assert response.status_code == 401, response.content
        assert response.json() == {"error": "invalid API key"}
        assert response["WWW-Authenticate"] == "Bearer"
    response = api_client.post(
        "/api/sessions", {"agent": dev_agent.slug}, content_type="application/json"
    )
    assert response.status_code == 401 and "Bearer" in response.json()["error"]


def test_it_declares_every_status_and_enum_in_the_openapi_schema(client, db):
    schema = client.get("/api/openapi.json").json()
    operations = {
        f"{method.upper()} {path}": operation
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    }
    for name, operation in operations.items():
        statuses = set(operation["responses"])
        assert {"401", "403", "422"} <= statuses, name
        if name.startswith("POST"):
            assert {"400", "413"} <= statuses, name
    assert {"404", "409"} <= set(
        operations["POST /api/sessions/{session_id}/messages"]["responses"]
    )
    assert "409" in operations["POST /api/runs/{run_id}/cancel"]["responses"]
    error = schema["components"]["schemas"]["ErrorOut"]
    assert {"error", "field"} <= set(error["properties"])

    def enum(node: dict) -> set[str]:
        if "$ref" in node:
            return enum(schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]])
        if "allOf" in node:
            return enum(node["allOf"][0])
        return set(node["enum"])

    def field_enum(schema_name: str, field: str) -> set[str]:
        return enum(schema["components"]["schemas"][schema_name]["properties"][field])

    assert field_enum("SessionOut", "status") == {"active", "handed_off", "closed"}
    assert "cancelled" in field_enum("RunOut", "status")
    assert "awaiting_approval" in field_enum("DecisionOut", "status")
    assert field_enum("HandoffOut", "status") == {"open", "claimed", "resolved"}
    assert field_enum("MessageOut", "role") >= {"user", "assistant", "tool"}
    (status,) = [p for p in operations["GET /api/handoffs"]["parameters"] if p["name"] == "status"]
    assert enum(status["schema"]) == {"open", "claimed", "resolved", "all"}


SCHEMATHESIS_CONFIG = """
[generation]
max-examples = 8

[dictionaries.agents]
values = ["{agent}"]

[dictionaries.sessions]
values = ["{session}"]

[dictionaries.runs]
values = ["{run}", "{failed_run}"]

[dictionaries.tool_calls]
values = [{tool_call}]

[dictionaries.handoffs]
values = [{handoff}]

[parameters]
"body.agent" = {{ dictionary = "agents", probability = 0.5 }}
"path.session_id" = {{ dictionary = "sessions", probability = 0.5 }}
"path.run_id" = {{ dictionary = "runs", probability = 0.5 }}
"path.tool_call_id" = {{ dictionary = "tool_calls", probability = 0.5 }}
"path.handoff_id" = {{ dictionary = "handoffs", probability = 0.5 }}
"""


@pytest.mark.slow
def test_it_gives_no_server_error_and_keeps_to_its_schema_under_schemathesis(
    web, worker, bob_key, dev_agent, tmp_path
):
    """Schemathesis (all its phases and checks, a short run) against the real server."""
    session = SessionFactory(agent=dev_agent)
    run = Run.objects.create(session=session, agent=dev_agent, status=RunStatus.SUCCEEDED)
    failed = Run.objects.create(
        session=session, agent=dev_agent, status=RunStatus.FAILED, error_class="ModelError"
    )
    call = ToolCall.objects.create(
        run=failed, step=1, call_id="c1", tool_name="echo", status=ToolCallStatus.AWAITING_APPROVAL
    )
    config = tmp_path / "schemathesis.toml"
    config.write_text(
        SCHEMATHESIS_CONFIG.format(
            agent=dev_agent.slug,
            session=session.pk,
            run=run.pk,
            failed_run=failed.pk,
            tool_call=call.pk,
            handoff=make_handoff(agent=dev_agent).pk,
        )
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "--config-file",
            str(config),
            "run",
            f"http://{web}/api/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {bob_key}",
            "--seed",
            "1",
            "--workers",
            "1",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    schema = Client().get("/api/openapi.json").json()
    operations = sum(len(methods) for methods in schema["paths"].values())
    assert f"Tested: {operations}" in result.stdout


def test_it_never_logs_an_authorization_header_of_another_scheme(client, db, caplog, settings):
    settings.DEBUG = True  # as under make run (pytest-django turns it off)
    secret = "YWxpY2U6czNjcjN0LXBhc3N3b3Jk"
    with caplog.at_level(logging.DEBUG):
        response = client.get("/api/handoffs", HTTP_AUTHORIZATION=f"Basic {secret}")
    assert response.status_code == 401
    assert secret not in caplog.text


def test_it_shows_a_runs_traceback_to_operators_only(client, alice, bob, charlie):
    session = SessionFactory()
    run = Run.objects.create(
        session=session,
        agent=session.agent,
        status=RunStatus.FAILED,
        error_class="bug",
        error_message="KeyError: 'sku'",
        error_traceback='Traceback (most recent call last):\n  File "/srv/agentops/x.py"',
    )
    for user, shown in ((charlie, False), (bob, True), (alice, True)):
        key = api_key_create(user=user, name="t")[1]
        error = client.get(f"/api/runs/{run.pk}", **auth(key)).json()["error"]
        assert (error["class"], error["message"]) == ("bug", "KeyError: 'sku'")
        assert error["traceback"] == (run.error_traceback if shown else None), user.username


def test_it_keeps_span_stack_traces_from_viewers(client, bob, charlie):
    from django.utils import timezone

    from tracing.models import Span, SpanStatus

    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.FAILED)
    stack = 'Traceback (most recent call last):\n  File "/srv/agentops/secret_path.py"'
    now = timezone.now()
    Span.objects.create(
        trace_id=run.pk,
        seq=1,
        span_id="00000000000000b1",
        name="step",
        status=SpanStatus.ERROR,
        error_class="bug",
        error_message="KeyError: 'sku'",
        start_time=now,
        end_time=now,
        attributes={"exception.stacktrace": stack, "step": 1},
    )
    trace = client.get(
        f"/api/runs/{run.pk}/trace", **auth(api_key_create(user=charlie, name="t")[1])
    )
    assert trace.json()["spans"][0]["attributes"] == {"step": 1}
    client.force_login(charlie)
    assert "secret_path.py" not in client.get(f"/runs/{run.pk}/").content.decode()
    client.force_login(bob)
    assert "secret_path.py" in client.get(f"/runs/{run.pk}/").content.decode()
