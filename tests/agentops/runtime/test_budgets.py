"""Budgets: per agent, end user, API key and widget key; refused with 429 and Retry-After
(or handed off) at the limit, atomic under concurrency, alerts at 80 % and 100 %. Real
worker, real Postgres, the dev model."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from agentops.budgets.models import Budget, BudgetHold, BudgetUsage
from agentops.budgets.services import BudgetExceeded, budget_create
from agentops.models import Handoff, Run, RunStatus, Session, SessionStatus
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import wait_for_run
from tests.agentops.widget.helpers import api, frame_token, make_key
from tests.factories import AgentFactory
from tests.kit import bearer, until
from tracing.alerts import alerts_evaluate
from tracing.models import AlertEvent, AlertMetric, AlertRule, ModelPrice

pytestmark = pytest.mark.django_db(transaction=True)


def _priced(agent) -> None:  # type: ignore[no-untyped-def]
    """A thousandth of a dollar a token for the agent's model."""
    ModelPrice.objects.create(
        model=agent.endpoint.default_model, input_per_million=1000, output_per_million=1000
    )


def _post_all_at_once(sessions: list[Session], content: str) -> tuple[list[Run], list[Exception]]:
    runs: list[Run] = []
    refusals: list[Exception] = []
    start = threading.Barrier(len(sessions))
    lock = threading.Lock()

    def post(session: Session) -> None:
        try:
            start.wait()
            run = session_post_message(session=session, content=content)
            with lock:
                runs.append(run)
        except BudgetExceeded as exc:
            with lock:
                refusals.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs, refusals


def test_a_daily_cost_budget_holds_under_fifty_runs_at_once(worker, dev_agent, client, bob_key):
    _priced(dev_agent)
    budget = budget_create(
        actor=None,
        name="support per day",
        scope="agent",
        agent=dev_agent,
        metric="cost",
        period="day",
        limit=Decimal(1000),
    )
    at_80 = AlertRule.objects.create(
        name="budget at 80%", metric=AlertMetric.BUDGET, threshold=80, min_runs=0
    )
    at_100 = AlertRule.objects.create(
        name="budget at 100%", metric=AlertMetric.BUDGET, threshold=100, min_runs=0
    )
    # One run teaches the budget what a run costs (before it, a run reserves all of it).
    first = session_post_message(
        session=session_create(agent=dev_agent, external_user="u0"), content="hello"
    )
    assert wait_for_run(first.pk).status == RunStatus.SUCCEEDED
    until(lambda: not BudgetHold.objects.exists(), message="the first run's hold is released")
    budget.refresh_from_db()
    usage = BudgetUsage.objects.get(budget=budget)
    one_run = usage.used
    assert one_run > 0 and budget.run_estimate == one_run and usage.reserved == 0
    # Nearly spent: room for five and a half runs more.
    Budget.objects.filter(pk=budget.pk).update(limit=one_run * Decimal("6.5"))
    alerts_evaluate()
    assert not AlertEvent.objects.filter(rule=at_80).exists()

    sessions = [session_create(agent=dev_agent, external_user=f"u{i}") for i in range(1, 51)]
    runs, refusals = _post_all_at_once(sessions, "hello")
    assert len(runs) + len(refusals) == 50
    assert len(runs) == 6, len(runs)  # while used + reserved < limit: 5.5 runs' room
    assert all(r.retry_after and r.retry_after > 0 for r in refusals)
    for run in runs:
        assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
        alerts_evaluate()  # evaluated as the runs spend: the 80 % alert fires once
    until(lambda: not BudgetHold.objects.exists(), message="every hold is released")
    usage.refresh_from_db()
    budget.refresh_from_db()
    assert usage.reserved == 0
    assert usage.used == one_run * 7
    assert usage.used - budget.limit <= one_run  # overspent by at most one run's worth

    # Spent: the API answers 429 with Retry-After, the seconds to the day's end.
    refused = client.post(
        f"/api/sessions/{sessions[-1].pk}/messages",
        {"content": "hello"},
        content_type="application/json",
        **bearer(bob_key),
    )
    assert refused.status_code == 429, refused.content
    assert refused.json()["budget"] == "support per day"
    assert 5 < int(refused["Retry-After"]) <= 86_400
    assert refused.json()["retry_after"] == int(refused["Retry-After"])
    alerts_evaluate()
    assert AlertEvent.objects.filter(rule=at_80, state="firing").count() == 1
    assert AlertEvent.objects.filter(rule=at_100, state="firing").count() == 1


def test_runs_per_minute_count_per_end_user(db, dev_agent):
    budget_create(
        actor=None,
        name="two a minute each",
        scope="end_user",
        metric="runs",
        period="minute",
        limit=Decimal(2),
    )
    erin = [session_create(agent=dev_agent, external_user="erin") for _ in range(3)]
    session_post_message(session=erin[0], content="a")
    session_post_message(session=erin[1], content="b")
    with pytest.raises(BudgetExceeded) as refused:
        session_post_message(session=erin[2], content="c")
    assert 0 < refused.value.retry_after <= 60
    assert not erin[2].messages.exists()  # refused whole: the message is not kept
    frank = session_create(agent=dev_agent, external_user="frank")
    assert session_post_message(session=frank, content="d") is not None
    assert BudgetUsage.objects.get(subject="erin").used == 2


def test_a_budget_set_to_hand_off_hands_the_conversation_to_a_person(db, dev_agent):
    budget_create(
        actor=None,
        name="one a minute",
        scope="agent",
        agent=dev_agent,
        metric="runs",
        period="minute",
        limit=Decimal(1),
        on_limit="handoff",
    )
    session_post_message(session=session_create(agent=dev_agent, external_user="a"), content="x")
    second = session_create(agent=dev_agent, external_user="b")
    assert session_post_message(session=second, content="y") is None
    second.refresh_from_db()
    assert second.status == SessionStatus.HANDED_OFF
    assert Handoff.objects.get(session=second).reason.startswith("budget reached: budget 'one")
    assert not Run.objects.filter(session=second).exists()
    assert second.messages.get().content == "y"  # the message waits for the person


def test_a_hand_off_gives_back_what_the_other_budgets_reserved(db, dev_agent):
    cost = budget_create(
        actor=None,
        name="cost per day",
        scope="agent",
        agent=dev_agent,
        metric="cost",
        period="day",
        limit=Decimal(100),
    )
    Budget.objects.filter(pk=cost.pk).update(run_estimate=Decimal(2))
    budget_create(
        actor=None,
        name="erin, once a minute",
        scope="end_user",
        subject="erin",
        metric="runs",
        period="minute",
        limit=Decimal(1),
        on_limit="handoff",
    )
    session_post_message(session=session_create(agent=dev_agent, external_user="erin"), content="a")
    usage = BudgetUsage.objects.get(budget=cost)
    assert usage.reserved == 2
    second = session_create(agent=dev_agent, external_user="erin")
    assert session_post_message(session=second, content="b") is None
    usage.refresh_from_db()
    assert (usage.used, usage.reserved) == (0, 2)  # the handed-off post's reservation went back
    assert BudgetHold.objects.count() == 1


def test_a_budget_of_another_agent_costs_the_post_one_statement(db, dev_agent):
    """No budget: no statement (the session's lock reads whether any exists). A budget that
    does not apply: one (the budgets are read), and nothing is counted."""
    session = session_create(agent=dev_agent, external_user="erin")
    with CaptureQueriesContext(connection) as without:
        session_post_message(session=session, content="a")
    Run.objects.filter(session=session).update(status=RunStatus.SUCCEEDED)
    budget_create(
        actor=None,
        name="another agent's",
        scope="agent",
        agent=AgentFactory(),
        metric="runs",
        period="minute",
        limit=Decimal(1),
    )
    with CaptureQueriesContext(connection) as other:
        session_post_message(session=session, content="b")
    assert len(other) == len(without) + 1, [q["sql"][:80] for q in other]
    assert not BudgetUsage.objects.exists()


def test_the_widget_says_so_in_a_plain_sentence(db, dev_agent):
    key, _ = make_key(agent=dev_agent)
    budget_create(
        actor=None,
        name="widget key per minute",
        scope="widget_key",
        subject=str(key.pk),
        metric="runs",
        period="minute",
        limit=Decimal(1),
    )
    first, second = Client(), Client()
    assert api(first, "messages", frame_token(first, key), {"content": "a"}).status_code == 201
    refused = api(second, "messages", frame_token(second, key), {"content": "b"})
    assert refused.status_code == 429
    assert refused.json()["error"].startswith("This chat has reached its usage limit for now.")
    assert "widget key per minute" not in refused.json()["error"]
    assert 0 < int(refused["Retry-After"]) <= 60


def test_the_api_manages_budgets_and_names_a_bad_field(client, alice, dev_agent):
    body = {
        "name": "support",
        "scope": "agent",
        "agent": dev_agent.slug,
        "metric": "tokens",
        "period": "month",
        "limit": 1_000_000,
    }
    for changes, field in [
        ({"scope": "planet"}, "scope"),
        ({"agent": "nobody"}, "agent"),
        ({"limit": -1}, "limit"),
        ({"period": "minute"}, "period"),
        ({"metric": "runs"}, "period"),
    ]:
        bad = client.post(
            "/api/budgets", {**body, **changes}, content_type="application/json", **bearer(alice)
        )
        assert bad.status_code == 422, (changes, bad.content)
        assert bad.json()["field"].split(".")[-1] == field, (changes, bad.json())
    created = client.post("/api/budgets", body, content_type="application/json", **bearer(alice))
    assert created.status_code == 201, created.content
    budget_id = created.json()["id"]
    assert created.json()["current"] == [] and created.json()["on_limit"] == "refuse"
    changed = client.patch(
        f"/api/budgets/{budget_id}",
        {"limit": 5, "on_limit": "handoff"},
        content_type="application/json",
        **bearer(alice),
    )
    assert changed.status_code == 200 and changed.json()["limit"] == 5
    listed = client.get(f"/api/budgets?agent={dev_agent.slug}", **bearer(alice)).json()
    assert [b["name"] for b in listed] == ["support"]
    gone = client.delete(f"/api/budgets/{budget_id}", **bearer(alice))
    assert gone.status_code == 204 and not Budget.objects.exists()


def test_v1_answers_a_spent_key_budget_as_openai_does(web, bob, dev_agent):
    import httpx

    from agentops.auth import api_key_create
    from agentops.models import ApiKey

    raw = api_key_create(user=bob, name="v1")[1]
    key = ApiKey.objects.get(user=bob, name="v1")
    budget_create(
        actor=None,
        name="this key: none today",
        scope="api_key",
        subject=str(key.pk),
        metric="tokens",
        period="day",
        limit=Decimal(0),
    )
    refused = httpx.post(
        f"http://{web}/v1/chat/completions",
        json={"model": dev_agent.slug, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    )
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "this key: none today" in error["message"]
    assert 0 < int(refused.headers["Retry-After"]) <= 86_400
    assert refused.headers["x-should-retry"] == "false"  # hours away: not for a client's retry
    # Another key of the same user is not limited by it.
    with httpx.stream(
        "POST",
        f"http://{web}/v1/chat/completions",
        json={
            "model": dev_agent.slug,
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {api_key_create(user=bob, name='v1b')[1]}"},
        timeout=30,
    ) as other:
        assert other.status_code == 200  # streaming: its run started


def test_an_api_key_budget_counts_the_keys_posts_on_the_api(client, bob, dev_agent):
    from agentops.auth import api_key_create
    from agentops.models import ApiKey

    raw = api_key_create(user=bob, name="limited")[1]
    key = ApiKey.objects.get(user=bob, name="limited")
    budget_create(
        actor=None,
        name="limited key",
        scope="api_key",
        subject=str(key.pk),
        metric="runs",
        period="minute",
        limit=Decimal(1),
    )

    def post(session: Session, token: str):  # type: ignore[no-untyped-def]
        return client.post(
            f"/api/sessions/{session.pk}/messages",
            {"content": "hello"},
            content_type="application/json",
            **bearer(token),
        )

    sessions = [session_create(agent=dev_agent, external_user=f"k{i}") for i in range(3)]
    assert post(sessions[0], raw).status_code == 202
    refused = post(sessions[1], raw)
    assert refused.status_code == 429 and refused.json()["budget"] == "limited key"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert post(sessions[2], api_key_create(user=bob, name="other")[1]).status_code == 202


def _cost_budget(agent, estimate: Decimal) -> Budget:  # type: ignore[no-untyped-def]
    budget = budget_create(
        actor=None,
        name="cost per day",
        scope="agent",
        agent=agent,
        metric="cost",
        period="day",
        limit=Decimal(100),
    )
    Budget.objects.filter(pk=budget.pk).update(run_estimate=estimate)
    return budget


def test_a_cancelled_runs_reservation_is_released_by_the_sweep_once(db, dev_agent, monkeypatch):
    from agentops.budgets import services as budgets
    from agentops.runtime.services import run_cancel

    budget = _cost_budget(dev_agent, Decimal(3))
    sessions = [session_create(agent=dev_agent, external_user=f"c{i}") for i in range(2)]
    kept, cancelled = (session_post_message(session=s, content="x") for s in sessions)
    usage = BudgetUsage.objects.get(budget=budget)
    assert usage.reserved == 6
    run_cancel(run=cancelled)
    assert budgets.budget_holds_release_ended() == 0  # ended just now: its driver may release
    monkeypatch.setattr(budgets, "ENDED_RELEASE_AFTER_SECONDS", 0)
    late = budgets.RunSpend(run_id=cancelled.pk)  # as a job that read the holds before the sweep
    assert budgets.budget_holds_release_ended() == 1
    late.release()  # found nothing left to release: not given back twice
    usage.refresh_from_db()
    assert (usage.used, usage.reserved) == (0, 3)  # only the kept run's reservation is held
    assert list(BudgetHold.objects.values_list("run_id", flat=True)) == [kept.pk]
