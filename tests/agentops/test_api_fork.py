"""POST /api/runs/{id}/fork: a fork made through the API, and its links on both sides."""

from __future__ import annotations

import pytest

from agentops.auth import api_key_create
from agentops.models import Message, Run, Session
from tests.agentops.runtime.helpers import recorded_run

pytestmark = pytest.mark.django_db


def post_fork(client, key, run_id, body):  # type: ignore[no-untyped-def]
    return client.post(
        f"/api/runs/{run_id}/fork",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )


def test_it_forks_a_run_and_links_both_sides(client, bob_key):
    origin = recorded_run()
    response = post_fork(  # 2.0 is a JSON integer
        client, bob_key, origin.pk, {"step": 2.0, "content": "bye", "allow_side_effects": True}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["forked_from"] == {
        "session": str(origin.session_id),
        "run": str(origin.pk),
        "step": 2,
    }
    fork = Run.objects.get(pk=body["run"])
    assert str(fork.session_id) == body["session"]
    assert Message.objects.get(session_id=fork.session_id, step=2).content == "bye"
    assert Session.objects.get(pk=fork.session_id).fork_tools == "allow"
    auth = {"HTTP_AUTHORIZATION": f"Bearer {bob_key}"}
    assert client.get(f"/api/runs/{fork.pk}", **auth).json()["forked_from"] == body["forked_from"]
    assert client.get(f"/api/runs/{origin.pk}", **auth).json()["forks"] == [body["run"]]
    session = client.get(f"/api/sessions/{fork.session_id}", **auth).json()
    assert session["forked_from"] == str(origin.session_id)


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"step": 7}, "step", "has steps 0 to 3"),  # 409: the run has no such step
        ({"step": -1}, "step", "greater than or equal to 0"),
        ({"step": 1.5}, "step", "fractional part"),
        ({}, "step", "required"),
        ({"step": 0, "content": ""}, "content", "must not be empty"),
        ({"step": 2, "content": "a\u0000b"}, "content", "NUL"),
        ({"step": 2, "allow_side_effects": "yes"}, "allow_side_effects", "valid boolean"),
        ({"step": 1, "agent_version": 9}, "agent_version", "has no version 9"),
        ({"step": 1, "agent_version": 0}, "agent_version", "greater than or equal to 1"),
        ({"step": 1, "model": ""}, "model", "at least 1"),
    ],
)
def test_it_names_the_field_of_a_fork_it_refuses(client, bob_key, body, field, says):
    origin = recorded_run()
    response = post_fork(client, bob_key, origin.pk, body)
    conflicts = ({"step": 7}, {"step": 0, "content": ""}, {"step": 1, "agent_version": 9})
    assert response.status_code == (409 if body in conflicts else 422)
    assert response.json()["field"] == field
    assert says in response.json()["error"]
    assert Session.objects.count() == 1


def test_it_needs_the_operator_role_and_an_existing_run(client, bob_key, charlie):
    origin = recorded_run()
    viewer_key = api_key_create(user=charlie, name="t")[1]
    assert post_fork(client, viewer_key, origin.pk, {"step": 1}).status_code == 403
    missing = post_fork(client, bob_key, "00000000-0000-0000-0000-000000000000", {"step": 1})
    assert missing.status_code == 404
