import pytest

from agentops.auth import api_key_create
from agentops.models import Run, RunStatus, Session
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import SessionFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bob_key(bob):
    return api_key_create(user=bob, name="tests")[1]


def auth(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


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
    assert "still running" in response.json()["error"]
    assert session.messages.count() == 0


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
