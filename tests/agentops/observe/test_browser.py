"""The observability pages in headless Chromium: a run's trace grows live, the runs list
follows the ops stream, model output is shown as text, and the CSP holds (no console errors)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from agentops.models import Run, RunStatus
from tests.browser.conftest import (  # noqa: F401 (fixtures)
    base_url,
    browser,
    console_errors_expected,
    login,
    screenshot,
)
from tests.factories import SessionFactory
from tests.tracing.helpers import fixed_runs
from tracing.emit import Tracer
from tracing.models import ModelPrice
from tracing.platform.live import OPS_GROUP, send_now, wait_sent
from tracing.rollups import rollup_metrics

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def watch_console(page) -> list[str]:  # type: ignore[no-untyped-def]
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (problems.append("dialog: " + d.message), d.dismiss()))
    return problems


def test_it_grows_a_running_trace_live_and_shows_attributes_as_text(browser, base_url, charlie):  # noqa: F811
    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.RUNNING)
    page = login(browser, base_url, "charlie", path=f"/runs/{run.pk}/")
    problems = watch_console(page)
    expect(page.locator("[data-live-status]")).to_contain_text("live")
    expect(page.locator("text=Waiting for the first span")).to_be_visible()

    tracer = Tracer(run.pk, session_id=session.pk, agent=session.agent.slug)
    tracer.event("run.status", status="running")
    with tracer.span("step", step=1):
        with tracer.span(
            "model.call",
            **{
                "gen_ai.request.model": "m-1",
                "gen_ai.usage.input_tokens": 42,
                "gen_ai.usage.output_tokens": 7,
                "gen_ai.response.text": "<script>alert('x')</script><img src=x onerror=alert(2)>",
            },
        ):
            pass
    tracer.flush_now()
    wait_sent()
    row = page.locator("tr.span-row[data-name='model.call']")
    expect(row).to_be_visible()
    expect(row).to_contain_text("42 / 7")
    row.locator("summary").click()
    expect(row.locator("dd pre").filter(has_text="<script>alert('x')</script>")).to_be_visible()

    with tracer.span("tool.call", **{"gen_ai.tool.name": "echo"}):
        pass
    tracer.event("run.status", status="succeeded")
    tracer.flush_now()
    wait_sent()
    expect(page.locator("tr.span-row[data-name='tool.call']")).to_be_visible()
    expect(page.locator("tr.span-row")).to_have_count(
        5
    )  # two run.status events, step, model.call, tool.call
    screenshot(page, "observe-run-detail")
    assert problems == []


def test_it_adds_new_runs_to_the_list_from_the_ops_stream(browser, base_url, charlie):  # noqa: F811
    page = login(browser, base_url, "charlie", path="/runs/")
    problems = watch_console(page)
    expect(page.locator("text=No runs yet")).to_be_visible()
    expect(page.locator("[data-live-status]")).to_contain_text("live")
    session = SessionFactory(external_user="<b>erin</b>")
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.RUNNING)
    send_now(OPS_GROUP, {"kind": "run.status", "run_id": str(run.pk), "status": "running"})
    wait_sent()
    expect(page.locator(f"tr[data-run='{run.pk}']")).to_contain_text("<b>erin</b>")
    page.select_option("select[name=status]", "failed")
    expect(page.locator("text=No runs match these filters.")).to_be_visible()
    assert "status=failed" in page.url
    assert problems == []


def test_it_draws_the_metrics_page(browser, base_url, charlie):  # noqa: F811
    ModelPrice.objects.create(model="gpt-x", input_per_million=1, output_per_million=2)
    fixed_runs(timezone.now() - timedelta(minutes=3))
    rollup_metrics(settle_seconds=0)
    page = login(browser, base_url, "charlie", path="/insights/?window=1h")
    problems = watch_console(page)
    expect(page.locator("svg.chart")).to_have_count(5)
    expect(page.locator("#metrics-models tr[data-model='gpt-x']")).to_contain_text("50.0%")
    screenshot(page, "observe-metrics")
    assert problems == []


def test_it_shows_a_model_call_in_progress_and_streams_its_tokens(
    browser,  # noqa: F811
    base_url,  # noqa: F811
    charlie,
    dev_agent,
    devmodel,
    model_name,
):
    """The page opens while the run's first model call streams: nothing of the run is stored
    yet, the call is only in the worker's memory."""
    from agentops.runtime.services import session_create, session_post_message
    from tests.kit import until
    from tracing.models import Span

    words = [f"word{i:02d}" for i in range(40)]
    devmodel.script(model_name, faults=[{"stream_delay": 0.25}])
    session = session_create(agent=dev_agent, external_user="erin")
    run = session_post_message(session=session, content=" ".join(words))
    until(lambda: devmodel.requests(model_name))  # the model call has started
    page = login(browser, base_url, "charlie", path=f"/runs/{run.pk}/")
    problems = watch_console(page)

    def stored(name: str) -> bool:
        return Span.objects.filter(trace_id=run.pk, name=name).exists()

    row = page.locator("tr.span-open[data-name='model.call']")
    expect(row).to_be_visible()
    expect(row).to_contain_text(model_name)
    expect(page.locator("tr.span-open[data-name='step']")).to_be_visible()
    assert not stored("model.call"), "shown while it was in progress"
    text = row.locator("[data-span-text]")
    shown = [w for w in words if w in (text.text_content() or "")]
    later = words[words.index(shown[-1]) + 3] if shown else words[3]
    expect(text).to_contain_text(later)  # tokens arrive in the row as they stream
    assert not stored("model.call"), "tokens were streamed into the open row"
    expect(text).to_contain_text("You said: word00")
    screenshot(page, "observe-run-streaming")

    expect(page.locator("tr.span-row[data-name='model.call']:not(.span-open)")).to_be_visible(
        timeout=30_000
    )
    expect(page.locator("tr.span-open")).to_have_count(0)
    assert problems == []
