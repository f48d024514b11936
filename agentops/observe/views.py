"""Observability pages: runs, run detail, failures, metrics, alerts, storage; /metrics."""

from __future__ import annotations

import hmac
import uuid
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agentops.agents.forms import FeedbackForm
from agentops.auth import api_key_user, bearer_token, has_role, role_required
from agentops.feedback.selectors import feedback_for_run, feedback_mine
from agentops.feedback.services import feedback_give
from agentops.models import Run
from agentops.observe import selectors
from agentops.observe.forms import (
    WINDOWS,
    FailureFilterForm,
    ForkForm,
    MetricsFilterForm,
    RunFilterForm,
    window_since,
)
from agentops.observe.prometheus import registry
from agentops.selectors import RunOutcomes, run_outcomes
from tracing import charts
from tracing.models import AlertRule, RetentionOverride, RollupState
from tracing.platform import conf
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import form_errors_from, refusal_message
from tracing.platform.web import HtmxHttpRequest, error_status, next_url, page_query
from tracing.selectors import (
    Stats,
    alert_events_recent,
    metrics_overview,
    metrics_series,
    rollup_agents,
    storage_tables,
)

PAGE_SIZE = 50


def _run_or_404(run_id: uuid.UUID) -> Run:
    run = Run.objects.select_related("agent", "session", "agent_version").filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    return run


# --- runs -----------------------------------------------------------------------------------


@role_required("viewer")
@require_GET
def runs(request: HtmxHttpRequest) -> HttpResponse:
    form = RunFilterForm(request.GET or None, agents=selectors.agent_slugs())
    page = None
    costs: dict[Any, Any] = {}
    status = 200
    if form.is_bound and not form.is_valid():
        status = error_status(request)
    else:
        data = form.cleaned_data if form.is_bound else {}
        qs = selectors.runs_filtered(
            agent=data.get("agent", ""),
            status=data.get("status", ""),
            error_class=data.get("error", ""),
            since=window_since(data.get("window", "")),
            query=data.get("q", ""),
            version=data.get("version"),
            source=data.get("source", ""),
        )
        page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
        costs = selectors.run_costs(runs=list(page.object_list))
    query = page_query(request)
    context = {
        "form": form,
        "page": page,
        "costs": costs,
        "query": query,
        "filtered": bool(query),
    }
    template = "observe/runs.html#results" if request.htmx else "observe/runs.html"
    return render(request, template, context, status=status)


@role_required("viewer")
@require_GET
def run_detail(request: HtmxHttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = _run_or_404(run_id)
    context = {
        "run": run,
        "trace": selectors.run_trace(run=run),
        "messages_list": selectors.run_messages(run=run),
        "tool_calls": selectors.run_tool_calls(run=run),
        "handoffs": selectors.run_handoffs(run=run),
        "live": selectors.run_is_live(run=run),
        "forks": selectors.run_forks(run=run),
        "versions": selectors.agent_version_numbers(agent_id=run.agent_id),
        "feedback": feedback_for_run(run=run),
        "mine": feedback_mine(run=run, author=request.user),
        "feedback_form": FeedbackForm(),
    }
    template = "observe/run_detail.html#live" if request.htmx else "observe/run_detail.html"
    return render(request, template, context)


@role_required("operator")
@require_POST
def run_retry(request: HtmxHttpRequest, run_id: uuid.UUID) -> HttpResponse:
    from agentops.runtime.services import run_retry as retry

    run = _run_or_404(run_id)
    try:
        retry(run=run, actor=request.user)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not retried")
    else:
        messages.success(
            request, f"Run {run.pk} resumes from its last checkpoint (step {run.step})."
        )
    return redirect(next_url(request, fallback=reverse("observe:run", args=[run.pk])))


@role_required("operator")
@require_POST
def run_cancel(request: HtmxHttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """Cancel a queued, running or waiting run. A script's fetch (Accept: application/json)
    gets JSON (409 naming why not); a form post goes back to `next` or the run's page."""
    from agentops.runtime.services import run_cancel as cancel

    run = _run_or_404(run_id)
    refusal: ApplicationError | None = None
    try:
        cancel(run=run, actor=request.user)
    except ApplicationError as exc:
        refusal = exc
    if request.headers.get("Accept") == "application/json":
        body = {"run": str(run.pk), "status": run.status}
        if refusal is None:
            return JsonResponse(body)
        return JsonResponse(
            {**body, **refusal.body(), "error": f"Not cancelled: {refusal}"}, status=refusal.status
        )
    if refusal:
        refusal_message(request, refusal, refused="Not cancelled")
    else:
        messages.success(request, f"Run {run.pk} cancelled.")
    return redirect(next_url(request, fallback=reverse("observe:run", args=[run.pk])))


@role_required("operator")
@require_POST
def run_fork(request: HtmxHttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """Fork the run at a step into a new session; its run's page follows."""
    from agentops.runtime.services import run_fork as fork

    run = _run_or_404(run_id)
    form = ForkForm(request.POST)
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        messages.error(request, f"Not forked: {field}: {' '.join(str(e) for e in errors)}")
        return redirect(reverse("observe:run", args=[run.pk]))
    data = form.cleaned_data
    try:
        forked = fork(
            run=run,
            step=data["step"],
            content=data["content"] if "content" in request.POST else None,
            allow_side_effects=data["allow_side_effects"],
            agent_version=data["agent_version"],
            model=data["model"] or None,
            actor=request.user,
        )
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not forked")
        return redirect(reverse("observe:run", args=[run.pk]))
    messages.success(
        request,
        f"Forked at step {data['step']} of run {run.pk} into session {forked.session_id}.",
    )
    return redirect(reverse("observe:run", args=[forked.pk]))


@role_required("operator")
@require_POST
def run_feedback(request: HtmxHttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """Score the run, or one of its messages (`message`): thumbs, an optional 1-5 score and a
    comment. Scoring the same target again replaces the earlier verdict. From htmx (the
    thumbs beside a message) the answer is the thumbs as they now stand."""
    run = _run_or_404(run_id)
    form = FeedbackForm(request.POST)
    message = None
    if form.is_valid() and form.cleaned_data["message"] is not None:
        message = selectors.run_messages(run=run).filter(pk=form.cleaned_data["message"]).first()
        if message is None:
            form.add_error("message", "Not a message of this run.")
    if form.is_valid():
        try:
            feedback_give(
                author=request.user,
                run=None if message else run,
                message=message,
                rating=form.cleaned_data["rating"],
                score=form.cleaned_data["score"],
                comment=form.cleaned_data["comment"],
            )
        except (ApplicationError, ValidationError) as exc:
            form_errors_from(form, exc)
    if request.htmx:
        context = {
            "m": message,
            "run_id": run.pk,
            "given": None if form.errors else form.cleaned_data.get("rating"),
            "errors": form.errors,
        }
        return render(request, "observe/_thumbs.html", context)
    if form.errors:
        messages.error(
            request,
            "Feedback not saved: "
            + "; ".join(f"{k}: {' '.join(str(e) for e in v)}" for k, v in form.errors.items()),
        )
    else:
        messages.success(request, "Thanks: your feedback is saved.")
    return redirect(next_url(request, fallback=reverse("observe:run", args=[run.pk]) + "#feedback"))


# --- failures -------------------------------------------------------------------------------


@role_required("viewer")
@require_GET
def failures(request: HtmxHttpRequest) -> HttpResponse:
    form = FailureFilterForm(request.GET or None, agents=selectors.agent_slugs())
    groups: list[selectors.FailureGroup] = []
    status = 200
    if form.is_bound and not form.is_valid():
        status = error_status(request)
    else:
        data = form.cleaned_data if form.is_bound else {}
        window = data.get("window") or "7d"
        groups = selectors.failures_grouped(
            since=None if window == "all" else window_since(window),
            agent=data.get("agent", ""),
            version=data.get("version"),
        )
    run_ids = [r.pk for g in groups for r in g.runs]
    context = {
        "form": form,
        "groups": groups,
        "failing": selectors.failing_spans(run_ids=run_ids),
        "version": form.cleaned_data.get("version") if form.is_bound and form.is_valid() else None,
    }
    template = "observe/failures.html#groups" if request.htmx else "observe/failures.html"
    return render(request, template, context, status=status)


# --- metrics --------------------------------------------------------------------------------


def _slot_label(moment: Any, bucket_seconds: int, window: timedelta) -> str:
    local = timezone.localtime(moment)
    return local.strftime("%H:%M") if window <= timedelta(days=1) else local.strftime("%m-%d %H:%M")


def _charts(series: list[Any], bucket_seconds: int, window: timedelta) -> list[charts.Chart]:
    labels = [_slot_label(p.start, bucket_seconds, window) for p in series]
    return [
        charts.stacked_bars(
            title="Runs finished",
            labels=labels,
            series=[
                ("c-ok", "succeeded", [p.runs.succeeded for p in series]),
                ("c-bad", "failed", [p.runs.errors for p in series]),
                ("c-handoff", "handed off", [p.runs.handed_off for p in series]),
                ("c-muted", "cancelled", [p.runs.cancelled for p in series]),
            ],
        ),
        charts.line_chart(
            title="Latency p95",
            labels=labels,
            unit="ms",
            series=[
                ("c-run", "run", [p.runs.p95 for p in series]),
                ("c-model", "model call", [p.models.p95 for p in series]),
                ("c-tool", "tool call", [p.tools.p95 for p in series]),
            ],
        ),
        charts.stacked_bars(
            title="Tokens",
            labels=labels,
            series=[
                ("c-in", "input", [p.models.tokens_in for p in series]),
                ("c-out", "output", [p.models.tokens_out for p in series]),
            ],
        ),
        charts.stacked_bars(
            title="Estimated cost",
            labels=labels,
            unit="$",
            series=[("c-cost", "cost", [float(p.models.cost) for p in series])],
        ),
        charts.stacked_bars(
            title="Tool calls",
            labels=labels,
            series=[
                ("c-ok", "ok", [p.tools.count - p.tools.errors for p in series]),
                ("c-bad", "error", [p.tools.errors for p in series]),
            ],
        ),
    ]


def _version_figures(slug: str, since: Any, version: int | None) -> list[Any]:
    """The chosen agent's figures per version (from its runs: the rollups are per agent)."""
    from agentops.agents.selectors import agent_get, version_figures

    agent = agent_get(slug=slug) if slug else None
    if agent is None:
        return []
    return version_figures(agent=agent, since=since, version=version, include_idle=False)


@role_required("viewer")
@require_GET
def metrics(request: HtmxHttpRequest) -> HttpResponse:
    agents = sorted(set(selectors.agent_slugs()) | set(rollup_agents()))
    form = MetricsFilterForm(request.GET or None, agents=agents)
    status = 200
    data: dict[str, Any] = {"window": "24h", "agent": "", "version": None}
    if form.is_bound:
        if form.is_valid():
            data = {
                "window": form.cleaned_data["window"] or "24h",
                "agent": form.cleaned_data["agent"],
                "version": form.cleaned_data["version"],
            }
        else:
            status = error_status(request)
    now = timezone.now()
    window = WINDOWS[data["window"]][1]
    since = now - window
    overview = metrics_overview(since=since, until=now, agent=data["agent"])
    series = metrics_series(since=since, until=now, agent=data["agent"], points=48)
    # Outcome rates come from the one selector every page uses, not from the rollups (which
    # count run endings, retries included): the same filter reads the same number anywhere.
    outcomes = run_outcomes(since=since, until=now, agent=data["agent"], by="agent__slug")
    rows = {e["agent"]: e for e in overview.by_agent}
    for slug in outcomes.keys() - rows.keys():
        rows[slug] = {
            "agent": slug,
            "run": Stats(kind="run", agent=slug),
            "model": Stats(kind="model", agent=slug),
            "tool": Stats(kind="tool", agent=slug),
        }
    for slug, entry in rows.items():
        entry["outcomes"] = outcomes.get(slug) or RunOutcomes()
    overview.by_agent = sorted(rows.values(), key=lambda e: e["agent"])
    context = {
        "form": form,
        "overview": overview,
        "outcomes": run_outcomes(since=since, until=now, agent=data["agent"])[None],
        "charts": _charts(series, overview.bucket_seconds, window),
        "window_label": WINDOWS[data["window"]][0],
        "agent": data["agent"],
        "version": data["version"],
        "figures": _version_figures(data["agent"], since, data["version"]),
        "rollup": RollupState.objects.order_by("pk").first(),
    }
    template = "observe/metrics.html#body" if request.htmx else "observe/metrics.html"
    return render(request, template, context, status=status)


@role_required("viewer")
@require_GET
def alerts(request: HtmxHttpRequest) -> HttpResponse:
    context = {
        "rules": AlertRule.objects.order_by("-firing", "name"),
        "events": alert_events_recent(limit=100),
    }
    return render(request, "observe/alerts.html", context)


@role_required("viewer")
@require_GET
def alert_banner(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "observe/alert_banner.html")


@role_required("viewer")
@require_GET
def storage(request: HtmxHttpRequest) -> HttpResponse:
    tables = storage_tables()
    context = {
        "tables": tables,
        "total_bytes": sum(t.total_bytes for t in tables),
        "retention_days": conf.trace_retention_days(),
        "overrides": RetentionOverride.objects.order_by("agent"),
        "minute_days": conf.minute_rollup_retention_days(),
        "hour_days": conf.hour_rollup_retention_days(),
    }
    return render(request, "observe/storage.html", context)


# --- Prometheus -----------------------------------------------------------------------------


def _metrics_authorized(request: HtmxHttpRequest) -> bool:
    raw = bearer_token(request.headers.get("Authorization"))
    if raw is None:
        return False
    token = conf.metrics_token()
    if token and hmac.compare_digest(raw.encode(), token.encode()):
        return True
    user = api_key_user(raw)
    return user is not None and has_role(user, "viewer")


@require_GET
def prometheus(request: HtmxHttpRequest) -> HttpResponse:
    """Prometheus text format. `Authorization: Bearer <METRICS_TOKEN or a viewer's API key>`."""
    if not _metrics_authorized(request):
        response = JsonResponse(
            {"detail": "Send Authorization: Bearer <METRICS_TOKEN or an API key of a viewer>."},
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
