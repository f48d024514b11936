"""Runs, run detail, failures, metrics, alerts and storage pages; the Prometheus endpoint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from agentops.agents.selectors import version_figures
from agentops.auth import api_key_create
from agentops.models import Message, Run, RunStatus, Session, ToolCall
from tests.factories import AgentFactory, SessionFactory, UserFactory
from tests.tracing.helpers import TraceBuilder, fixed_runs
from tracing.emit import Tracer
from tracing.models import AlertEvent, AlertRule, ModelPrice
from tracing.rollups import rollup_metrics

PAGES = [
    ("observe:runs", []),
    ("observe:failures", []),
    ("observe:metrics", []),
    ("observe:alerts", []),
    ("observe:storage", []),
]


def make_run(agent=None, status=RunStatus.SUCCEEDED, user="customer", **fields) -> Run:
    session = SessionFactory(agent=agent or AgentFactory(), external_user=user)
    return Run.objects.create(session=session, agent=session.agent, status=status, **fields)


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_it_needs_a_login_and_a_role_for_every_page(client, db, name, args):
    url = reverse(name, args=args)
    response = client.get(url)
    assert response.status_code == 302 and response.url.startswith(reverse("login"))
    client.force_login(UserFactory(username="dave"))
    assert client.get(url).status_code == 403


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_it_shows_every_page_to_a_viewer_even_when_empty(client, charlie, name, args):
    client.force_login(charlie)
    response = client.get(reverse(name, args=args))
    assert response.status_code == 200
    assert b'class="empty' in response.content or name == "observe:storage"


def test_it_lists_runs_with_filters_and_search(client, charlie):
    alpha, beta = AgentFactory(slug="alpha"), AgentFactory(slug="beta")
    ok = make_run(alpha, user="ann@example.com")
    failed = make_run(
        alpha, RunStatus.FAILED, user="bo", error_class="timeout", error_message="took too long"
    )
    other = make_run(beta, RunStatus.HANDED_OFF, user="cy")
    client.force_login(charlie)

    def listed(**params):
        response = client.get(reverse("observe:runs"), params)
        assert response.status_code == 200
        return {r.pk for r in response.context["page"].object_list}

    assert listed() == {ok.pk, failed.pk, other.pk}
    assert listed(agent="alpha") == {ok.pk, failed.pk}
    assert listed(status="handed_off") == {other.pk}
    assert listed(error="timeout") == {failed.pk}
    assert listed(q="ANN@") == {ok.pk}
    assert listed(q=str(other.session_id)) == {other.pk}
    assert listed(q=str(failed.pk)) == {failed.pk}
    Run.objects.filter(pk=ok.pk).update(created_at=timezone.now() - timedelta(days=2))
    assert listed(window="24h") == {failed.pk, other.pk}
    response = client.get(reverse("observe:runs"), {"agent": "beta", "status": "failed"})
    assert b"No runs match these filters." in response.content


def test_it_keeps_experiment_runs_out_of_the_runs_list_failures_and_home_unless_asked(
    client, charlie
):
    real = make_run(None, RunStatus.FAILED, error_class="timeout")
    sandboxed = make_run(real.agent, RunStatus.FAILED, user="item 1", error_class="timeout")
    Session.objects.filter(pk=sandboxed.session_id).update(sandbox=True)
    client.force_login(charlie)

    def listed(**params):
        response = client.get(reverse("observe:runs"), params)
        assert response.status_code == 200
        return {r.pk for r in response.context["page"].object_list}

    assert listed() == {real.pk}
    assert listed(source="experiments") == {sandboxed.pk}
    assert listed(source="all") == {real.pk, sandboxed.pk}
    assert client.get(reverse("observe:runs"), {"source": "x"}).status_code == 400
    failures = client.get(reverse("observe:failures")).context["groups"]
    assert [g.count for g in failures] == [1] and failures[0].runs == [real]
    home = client.get("/").content.decode()
    assert str(real.pk)[:8] in home and str(sandboxed.pk)[:8] not in home
    detail = client.get(reverse("observe:run", args=[sandboxed.pk])).content.decode()
    assert "data-experiment-run" in detail
    figures = version_figures(agent=real.agent)
    assert [(f.runs, f.outcomes.failed) for f in figures] == [(1, 1)]  # real conversations only
    assert (
        "data-experiment-run"
        not in client.get(reverse("observe:run", args=[real.pk])).content.decode()
    )


def test_it_says_which_filter_is_wrong(client, charlie):
    client.force_login(charlie)
    response = client.get(reverse("observe:runs"), {"status": "exploded"})
    assert response.status_code == 400
    assert b"exploded is not one of the available choices" in response.content
    htmx = client.get(reverse("observe:runs"), {"window": "3y"}, headers={"HX-Request": "true"})
    assert htmx.status_code == 200 and b"Fix the filters above" in htmx.content


def test_it_paginates_runs(client, charlie):
    agent = AgentFactory()
    session = SessionFactory(agent=agent)
    Run.objects.bulk_create(
        [Run(session=session, agent=agent, status="succeeded") for _ in range(55)]
    )
    client.force_login(charlie)
    first = client.get(reverse("observe:runs"))
    assert len(first.context["page"].object_list) == 50 and b"page 1 of 2" in first.content
    second = client.get(reverse("observe:runs"), {"page": 2})
    assert len(second.context["page"].object_list) == 5


def test_it_renders_only_the_results_for_htmx(client, charlie):
    make_run()
    client.force_login(charlie)
    response = client.get(reverse("observe:runs"), headers={"HX-Request": "true"})
    assert response.content.lstrip().startswith(b'<section class="card" id="run-results"')


def test_it_shows_a_run_as_a_tree_with_tokens_cost_messages_and_checkpoint(client, charlie):
    ModelPrice.objects.create(
        model="gpt-x", input_per_million=Decimal("1"), output_per_million=Decimal("2")
    )
    run = make_run(step=2, state={"pending": ["call_1"]})
    Message.objects.create(session=run.session, seq=1, role="user", content="What is 2+2?", run=run)
    Message.objects.create(
        session=run.session, seq=2, role="assistant", content="It is 4.", run=run
    )
    ToolCall.objects.create(
        run=run,
        step=1,
        call_id="call_1",
        tool_name="calculator",
        status="succeeded",
        arguments={"expression": "2+2"},
        result="4",
        attempts=1,
    )
    tracer = Tracer(run.pk, session_id=run.session_id, agent=run.agent.slug)
    with tracer.span("step", step=1):
        with tracer.span(
            "model.call",
            **{
                "gen_ai.request.model": "gpt-x",
                "gen_ai.response.model": "gpt-x",
                "gen_ai.usage.input_tokens": 1000,
                "gen_ai.usage.output_tokens": 500,
            },
        ):
            pass
        with tracer.span("tool.call", **{"gen_ai.tool.name": "calculator"}):
            tracer.event("fallback", target="backup")
    tracer.flush_now()
    client.force_login(charlie)
    response = client.get(reverse("observe:run", args=[run.pk]))
    assert response.status_code == 200
    rows = response.context["trace"].rows
    assert [(r.span.name, r.node.depth) for r in rows] == [
        ("step", 0),
        ("model.call", 1),
        ("tool.call", 1),
    ]
    assert [e.name for e in rows[2].node.events] == ["fallback"]
    assert response.context["trace"].cost == Decimal("0.002")  # 1000 * $1/M + 500 * $2/M
    body = response.content.decode()
    for text in (
        "What is 2+2?",
        "It is 4.",
        "calculator",
        "call_1",
        "&quot;pending&quot;",
        "1000 / 500",
        "$0.0020",
    ):
        assert text in body, text
    assert 'data-live-ws="/ws/runs/' in body


def test_it_escapes_what_spans_carry(client, charlie):
    run = make_run(
        AgentFactory(),
        RunStatus.FAILED,
        error_class="bug",
        error_message="<img src=x onerror=alert(1)>",
        error_traceback="Traceback <script>alert('tb')</script>",
    )
    builder = TraceBuilder(datetime.now(UTC), run.agent.slug, trace_id=run.pk)
    builder.add(
        "tool.call",
        duration_ms=5,
        error="tool_error",
        **{
            "gen_ai.tool.name": "<script>alert('name')</script>",
            "gen_ai.tool.call.result": "<script>alert('result')</script>",
        },
    )
    builder.save()
    client.force_login(charlie)
    for url in (
        reverse("observe:run", args=[run.pk]),
        reverse("observe:failures"),
        reverse("observe:runs"),
    ):
        body = client.get(url).content.decode()
        assert "<script>alert(" not in body and "<img src=x" not in body, url
    body = client.get(reverse("observe:run", args=[run.pk])).content.decode()
    assert "&lt;script&gt;alert(&#x27;result&#x27;)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body


def test_it_shows_a_runs_traceback_to_operators_only(client, alice, bob, charlie):
    run = make_run(
        status=RunStatus.FAILED,
        error_class="bug",
        error_message="KeyError: 'sku'",
        error_traceback='Traceback (most recent call last):\n  File "/srv/agentops/x.py"',
    )
    pages = (reverse("observe:run", args=[run.pk]), reverse("observe:failures"))
    for user, shown in ((charlie, False), (bob, True), (alice, True)):
        client.force_login(user)
        for url in pages:
            body = client.get(url).content.decode()
            assert "KeyError: &#x27;sku&#x27;" in body, url  # the class and message: everyone
            assert ("/srv/agentops/x.py" in body) is shown, (user.username, url)


def test_it_groups_failures_by_error_class_and_agent(client, charlie):
    alpha, beta = AgentFactory(slug="alpha"), AgentFactory(slug="beta")
    timeouts = [
        make_run(alpha, RunStatus.FAILED, error_class="timeout", error_message="slow", step=3)
        for _ in range(3)
    ]
    make_run(
        alpha,
        RunStatus.FAILED,
        error_class="bug",
        error_message="KeyError",
        error_traceback="Traceback: KeyError",
    )
    make_run(beta, RunStatus.HANDED_OFF, wait_reason="asked for a human")  # not a failure
    make_run(beta, RunStatus.HANDED_OFF, error_class="limit", wait_reason="max_steps reached")
    make_run(beta, RunStatus.SUCCEEDED)
    builder = TraceBuilder(datetime.now(UTC), "alpha", trace_id=timeouts[0].pk)
    builder.model("gpt-x", at_ms=0, duration_ms=10, error="timeout")
    builder.save()
    client.force_login(charlie)
    response = client.get(reverse("observe:failures"))
    groups = [(g.error_class, g.agent, g.status, g.count) for g in response.context["groups"]]
    assert groups[0] == ("timeout", "alpha", "failed", 3)
    assert set(groups[1:]) == {("bug", "alpha", "failed", 1), ("limit", "beta", "handed_off", 1)}
    body = response.content.decode()
    assert "max_steps reached" in body and "Traceback: KeyError" not in body  # a viewer
    assert "asked for a human" not in body
    assert "model.call" in body  # the failing span of the first timeout run
    assert "Retry from checkpoint" not in body  # viewers cannot retry
    narrowed = client.get(reverse("observe:failures"), {"agent": "beta"})
    assert [g.agent for g in narrowed.context["groups"]] == ["beta"]


def test_it_retries_a_failed_run_from_its_checkpoint_for_operators(client, bob, charlie):
    run = make_run(status=RunStatus.FAILED, error_class="timeout", error_message="slow", step=4)
    url = reverse("observe:run_retry", args=[run.pk])
    client.force_login(charlie)
    assert client.post(url).status_code == 403
    client.force_login(bob)
    page = client.get(reverse("observe:failures")).content.decode()
    assert "Retry from checkpoint" in page
    response = client.post(url, {"next": reverse("observe:failures")})
    assert response.status_code == 302 and response.url == reverse("observe:failures")
    run.refresh_from_db()
    assert (run.status, run.step, run.error_class) == ("queued", 4, "")
    again = client.post(url, follow=True)
    assert "Not retried" in again.content.decode()


def test_it_does_not_redirect_a_retry_off_site(client, bob):
    run = make_run(status=RunStatus.FAILED)
    client.force_login(bob)
    response = client.post(
        reverse("observe:run_retry", args=[run.pk]), {"next": "https://evil.example/"}
    )
    assert response.url == reverse("observe:run", args=[run.pk])


def test_it_shows_metrics_from_the_rollups(client, charlie):
    ModelPrice.objects.create(
        model="gpt-x", input_per_million=Decimal("1"), output_per_million=Decimal("2")
    )
    fixed_runs(timezone.now() - timedelta(minutes=5))
    rollup_metrics(settle_seconds=0)
    client.force_login(charlie)
    response = client.get(reverse("observe:metrics"), {"window": "1h"})
    assert response.status_code == 200
    overview = response.context["overview"]
    assert overview.runs.count == 4 and overview.models_total.cost == Decimal("0.00049")
    body = response.content.decode()
    assert 'data-model="gpt-x"' in body and 'data-tool="search"' in body and "<svg" in body
    assert "50.0%" in body  # success rate: 2 of 4 runs
    alpha = client.get(reverse("observe:metrics"), {"window": "1h", "agent": "alpha"}).context[
        "overview"
    ]
    assert alpha.runs.count == 3
    assert client.get(reverse("observe:metrics"), {"window": "9y"}).status_code == 400


def test_it_shows_alert_rules_history_and_the_banner(client, charlie):
    rule = AlertRule.objects.create(
        name="errors <b>high</b>", metric="error_rate", threshold=0.1, firing=True, last_value=0.5
    )
    AlertEvent.objects.create(
        rule=rule, state="firing", value=0.5, threshold=0.1, message="errors high fired"
    )
    client.force_login(charlie)
    body = client.get(reverse("observe:alerts")).content.decode()
    assert "errors high fired" in body and "errors &lt;b&gt;high&lt;/b&gt;" in body
    home = client.get(reverse("observe:runs")).content.decode()
    assert "1 alert firing" in home and "errors &lt;b&gt;high&lt;/b&gt;" in home
    rule.firing = False
    rule.save()
    assert "alert firing" not in client.get(reverse("observe:alert_banner")).content.decode()


def test_it_shows_rows_and_size_per_table(client, charlie):
    client.force_login(charlie)
    response = client.get(reverse("observe:storage"))
    tables = {t.table: t for t in response.context["tables"]}
    assert "tracing_span" in tables and tables["tracing_span"].holds == "tracing: spans"
    assert tables["agentops_run"].total_bytes > 0
    assert b"TRACE_RETENTION_DAYS" in response.content


# --- Prometheus -----------------------------------------------------------------------------


def test_it_refuses_prometheus_without_a_token(client, db, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token-123"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    roleless = UserFactory(username="dave")
    _, raw = api_key_create(user=roleless, name="x")
    assert client.get("/metrics", headers={"Authorization": f"Bearer {raw}"}).status_code == 401


def test_it_exports_rollups_to_prometheus(client, charlie, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token-123"
    ModelPrice.objects.create(
        model="gpt-x", input_per_million=Decimal("1"), output_per_million=Decimal("2")
    )
    fixed_runs(timezone.now() - timedelta(minutes=5))
    rollup_metrics(settle_seconds=0)
    make_run(status=RunStatus.RUNNING)
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token-123"})
    assert response.status_code == 200
    text = response.content.decode()
    for line in (
        'agentops_runs_finished_total{agent="alpha",outcome="succeeded"} 1.0',
        'agentops_runs_finished_total{agent="alpha",outcome="failed"} 1.0',
        'agentops_runs_finished_total{agent="alpha",outcome="handed_off"} 1.0',
        'agentops_model_calls_total{agent="alpha",model="gpt-x",status="error"} 2.0',
        'agentops_model_tokens_total{agent="alpha",direction="input",model="gpt-x"} 330.0',
        'agentops_tool_calls_total{agent="alpha",status="error",tool="search"} 1.0',
        'agentops_run_duration_seconds_count{agent="alpha"} 3.0',
        'agentops_run_duration_seconds_sum{agent="alpha"} 6.0',
        'agentops_runs_active{status="running"} 1.0',
    ):
        assert line in text, line
    assert 'agentops_model_cost_usd_total{agent="alpha",model="gpt-x"} 0.00049' in text
    # 1000 ms is in the 1.024 s bucket; the 2 s and 3 s runs are not.
    assert 'agentops_run_duration_seconds_bucket{agent="alpha",le="1.024"} 1.0' in text
    _, raw = api_key_create(user=charlie, name="prom")
    assert client.get("/metrics", headers={"Authorization": f"Bearer {raw}"}).status_code == 200


def test_it_exports_queue_depth_and_oldest_wait_to_prometheus(client, db, settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token-123"
    alpha, beta, idle = (AgentFactory(slug=s) for s in ("q-alpha", "q-beta", "q-idle"))
    enqueued = timezone.now() - timedelta(minutes=10)
    make_run(alpha, RunStatus.QUEUED, enqueued_at=enqueued)
    make_run(alpha, RunStatus.QUEUED, enqueued_at=enqueued + timedelta(minutes=9))
    make_run(alpha, RunStatus.RUNNING, enqueued_at=enqueued - timedelta(hours=1))
    make_run(beta, RunStatus.QUEUED, enqueued_at=enqueued + timedelta(minutes=5))
    make_run(idle, RunStatus.WAITING, enqueued_at=enqueued - timedelta(hours=1))
    before = timezone.now()
    response = client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token-123"})
    after = timezone.now()
    assert response.status_code == 200
    samples = {
        (s.name, s.labels.get("agent")): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }
    assert samples[("agentops_runs_queued", "q-alpha")] == 2
    assert samples[("agentops_runs_queued", "q-beta")] == 1
    assert samples[("agentops_runs_queued", "q-idle")] == 0
    oldest = {a: samples[("agentops_queue_oldest_wait_seconds", a)] for a in ("q-alpha", "q-beta")}
    for agent, since in (("q-alpha", enqueued), ("q-beta", enqueued + timedelta(minutes=5))):
        assert (before - since).total_seconds() <= oldest[agent] <= (after - since).total_seconds()
    assert samples[("agentops_queue_oldest_wait_seconds", "q-idle")] == 0


def test_it_shows_durations_under_a_minute_in_seconds(client, charlie):
    start = timezone.now() - timedelta(minutes=5)
    run = make_run(started_at=start, finished_at=start + timedelta(milliseconds=1530))
    client.force_login(charlie)
    for url in (reverse("observe:runs"), reverse("observe:run", args=[run.pk])):
        page = client.get(url).content.decode()
        assert "1.53 s" in page and "0\xa0minutes<" not in page, url


def test_it_cancels_an_active_run_for_operators_and_says_why_not(client, bob, charlie):
    from agentops.models import AuditEntry

    active = make_run(status=RunStatus.RUNNING)
    finished = make_run(status=RunStatus.SUCCEEDED)
    client.force_login(charlie)
    assert client.post(reverse("observe:run_cancel", args=[active.pk])).status_code == 403
    client.force_login(bob)
    json = {"headers": {"Accept": "application/json"}}
    response = client.post(reverse("observe:run_cancel", args=[active.pk]), **json)
    assert response.status_code == 200
    assert response.json() == {"run": str(active.pk), "status": "cancelled"}
    assert AuditEntry.objects.filter(action="run.cancel", actor=bob).exists()
    response = client.post(reverse("observe:run_cancel", args=[finished.pk]), **json)
    assert response.status_code == 409
    assert response.json()["error"] == f"Not cancelled: run {finished.pk} is already succeeded"
    page = client.post(reverse("observe:run_cancel", args=[finished.pk]), follow=True)
    assert "Not cancelled: run" in page.content.decode()
    assert Run.objects.get(pk=finished.pk).status == RunStatus.SUCCEEDED
