"""`Idempotency-Key` on the API's POSTs (agentops/idempotency.py): a retried or duplicated
request acts once and answers what the first answered."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from agentops import idempotency
from agentops.auth import api_key_create
from agentops.models import IdempotencyKey, Message, Run
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import SessionFactory
from tracing.retention import retention_purge

pytestmark = pytest.mark.django_db(transaction=True)


def headers(key: str, idempotency_key: str | None = None) -> dict[str, str]:
    out = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    if idempotency_key is not None:
        out["HTTP_IDEMPOTENCY_KEY"] = idempotency_key
    return out


def post(path: str, body: dict, **extra):
    return Client().post(path, body, content_type="application/json", **extra)


def test_it_starts_one_run_for_twenty_concurrent_duplicates(bob_key, dev_agent, worker):
    session = SessionFactory(agent=dev_agent)
    path = f"/api/sessions/{session.pk}/messages"
    barrier = threading.Barrier(20)
    answers: list = []

    def send():
        try:
            barrier.wait()
            answers.append(post(path, {"content": "hello"}, **headers(bob_key, "retry-1")))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 20
    assert {(a.status_code, a.content) for a in answers} == {(202, answers[0].content)}
    (run,) = Run.objects.filter(session=session)
    assert answers[0].json() == {"run": str(run.pk)}
    assert Message.objects.filter(session=session, role="user").count() == 1
    assert sum(a.get("Idempotent-Replayed") == "true" for a in answers) == 19
    wait_for_run(run.pk)


def test_it_refuses_the_same_key_for_another_request(bob_key, db):
    session = SessionFactory()
    first = post("/api/sessions", {"agent": session.agent.slug}, **headers(bob_key, "k1"))
    assert first.status_code == 201
    again = post(
        "/api/sessions", {"user": "u", "agent": session.agent.slug}, **headers(bob_key, "k1")
    )
    assert again.status_code == 422
    assert again.json()["field"] == "Idempotency-Key"
    assert again.json()["error"].startswith("Idempotency-Key:")
    elsewhere = post(
        f"/api/sessions/{session.pk}/messages", {"content": "x"}, **headers(bob_key, "k1")
    )
    assert elsewhere.status_code == 422
    # The same JSON with other spacing and key order is the same request.
    same = Client().post(
        "/api/sessions",
        '{ "agent" : "' + session.agent.slug + '" }',
        content_type="application/json",
        **headers(bob_key, "k1"),
    )
    assert same.status_code == 201 and same.content == first.content
    assert same["Idempotent-Replayed"] == "true"
    for bad in ("", "x" * 256, "tab\there"):
        refused = post("/api/sessions", {"agent": "a"}, **headers(bob_key, bad))
        assert refused.status_code == 422 and refused.json()["field"] == "Idempotency-Key"


def test_it_keeps_keys_per_caller_and_forgets_refusals(bob, charlie, db):
    session = SessionFactory()
    body = {"agent": session.agent.slug}
    bob_key, other_key = (api_key_create(user=bob, name=n)[1] for n in ("a", "b"))
    assert post("/api/sessions", body, **headers(bob_key + "x", "k")).status_code == 401
    viewer_key = api_key_create(user=charlie, name="v")[1]
    assert post("/api/sessions", body, **headers(viewer_key, "k")).status_code == 403
    assert not IdempotencyKey.objects.exists()  # nothing done, nothing kept
    first = post("/api/sessions", body, **headers(bob_key, "k"))
    second = post("/api/sessions", body, **headers(other_key, "k"))  # another key, its own
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    # The 409 of a wrong state is the answer to that request: a retry gets it again.
    session.status = "closed"
    session.save()
    path = f"/api/sessions/{session.pk}/messages"
    closed = post(path, {"content": "x"}, **headers(bob_key, "k2"))
    assert closed.status_code == 409
    session.status = "active"
    session.save()
    replayed = post(path, {"content": "x"}, **headers(bob_key, "k2"))
    assert (replayed.status_code, replayed.content) == (409, closed.content)


def test_it_answers_409_while_the_first_is_still_in_progress(bob_key, monkeypatch, db):
    session = SessionFactory()
    scope = f"key:{_key_id(bob_key)}"
    holding, release = threading.Event(), threading.Event()

    def first_request_in_flight():
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(
                    scope=scope, key="slow", fingerprint="f", status_code=0
                )
                holding.set()
                release.wait(30)
                transaction.set_rollback(True)  # its process died: nothing committed
        finally:
            connection.close()

    thread = threading.Thread(target=first_request_in_flight)
    thread.start()
    holding.wait(10)
    monkeypatch.setattr(idempotency, "WAIT_SECONDS", 0.3)
    body = {"agent": session.agent.slug}
    busy = post("/api/sessions", body, **headers(bob_key, "slow"))
    release.set()
    thread.join(10)
    assert busy.status_code == 409
    assert "in progress" in busy.json()["error"] and busy.json()["field"] == "Idempotency-Key"
    assert post("/api/sessions", body, **headers(bob_key, "slow")).status_code == 201


def _key_id(raw: str) -> int:
    from agentops.auth import hash_api_key
    from agentops.models import ApiKey

    return ApiKey.objects.get(key_hash=hash_api_key(raw)).pk


def test_it_forgets_keys_after_a_day(bob_key, db):
    session = SessionFactory()
    body = {"agent": session.agent.slug}
    first = post("/api/sessions", body, **headers(bob_key, "old"))
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))
    later = post("/api/sessions", body, **headers(bob_key, "old"))  # expired: runs again
    assert later.status_code == 201 and later.json()["id"] != first.json()["id"]
    IdempotencyKey.objects.create(scope="key:0", key="stale", fingerprint="f", status_code=201)
    IdempotencyKey.objects.filter(key="stale").update(
        created_at=timezone.now() - timedelta(hours=25)
    )
    assert retention_purge()["agentops.idempotency_keys"] == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["old"]
