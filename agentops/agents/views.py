"""The agent builder: agents, their settings, versions (diff, publish, rollback) and a draft
chat beside the form. Admins change agents; operators and viewers read them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from agentops.agents import selectors, services
from agentops.agents.forms import AgentForm
from agentops.auth import has_role, role_require, role_required
from agentops.console.views import MessageForm
from agentops.experiments.selectors import agent_version_gate
from agentops.models import Agent, AgentVersion, Session
from agentops.runtime import drafts
from agentops.selectors import conversation_get
from tracing.platform.forms import form_submit
from tracing.platform.web import HtmxHttpRequest, id_param, next_url

DRAFT_KEY = "agent-draft:{slug}"
FIGURES_WINDOW = timedelta(days=30)


def _agent_or_404(slug: str) -> Agent:
    agent = selectors.agent_get(slug=slug)
    if agent is None:
        raise Http404("No such agent.")
    return agent


def _version_or_404(agent: Agent, number: int) -> AgentVersion:
    version = selectors.version_get(agent=agent, number=number)
    if version is None:
        raise Http404("No such version.")
    return version


def _draft(request: HtmxHttpRequest, agent: Agent) -> Session | None:
    return selectors.draft_session_get(
        agent=agent, session_id=request.session.get(DRAFT_KEY.format(slug=agent.slug))
    )


@role_required("viewer")
@require_GET
def index(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "agents/index.html", {"agents": selectors.agents_overview()})


@role_required("admin")
@require_http_methods(["GET", "POST"])
def create(request: HtmxHttpRequest) -> HttpResponse:
    form = AgentForm(request.POST or None, initial={"memory_enabled": True})
    if request.method == "POST":
        version = form_submit(
            request,
            form,
            lambda: services.agent_create(
                slug=form.cleaned_data["slug"],
                config=form.config(),
                max_concurrent_runs=form.cleaned_data["max_concurrent_runs"],
                author=request.user,
                note=form.cleaned_data["note"],
                publish="publish" in request.POST,
            ),
            done=lambda version: _saved_text(version, "publish" in request.POST),
        )
        if version is not None:
            return redirect("agents:detail", slug=version.agent.slug)
    status = 400 if form.is_bound else 200
    return render(request, "agents/edit.html", {"form": form, "agent": None}, status=status)


def _saved_text(version: AgentVersion, published: bool) -> str:
    return f"Saved as v{version.number}" + (" and published." if published else ".")


def _detail_context(request: HtmxHttpRequest, agent: Agent, form: AgentForm) -> dict[str, Any]:
    draft = _draft(request, agent) if has_role(request.user, "admin") else None
    latest = selectors.agent_latest_saved(agent=agent)
    if draft is not None and latest is not None and draft.agent_version_id != latest.pk:
        # Saved meanwhile (another tab, another admin, a tool's page): the chat runs what
        # the form shows.
        services.draft_session_pin(session=draft, version=latest)
    context: dict[str, Any] = {
        "agent": agent,
        "form": form,
        "latest": latest,
        "figures": selectors.version_figures(agent=agent, since=timezone.now() - FIGURES_WINDOW),
        "draft": draft,
    }
    if draft is not None:
        conversation = conversation_get(session=draft)
        context.update(
            draft_items=conversation.items,
            draft_run=conversation.run,
            message_form=MessageForm(),
            context=drafts.draft_context(session=draft),
        )
    return context


@role_required("viewer")
@require_http_methods(["GET", "POST"])
def detail(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The agent's settings (a form for admins), its per-version figures and the draft chat."""
    agent = _agent_or_404(slug)
    if request.method == "POST":
        role_require(
            user=request.user, role="admin", refusal="Changing an agent needs the admin role."
        )
        form = AgentForm(request.POST, agent=agent)
        publish = "publish" in request.POST
        before = selectors.agent_latest_saved(agent=agent)
        version = form_submit(
            request,
            form,
            lambda: services.agent_update(
                agent=agent,
                changes=form.config(),
                max_concurrent_runs=form.cleaned_data["max_concurrent_runs"],
                author=request.user,
                note=form.cleaned_data["note"],
                publish=publish,
                based_on=id_param(request.POST.get("based_on", "")),
            ),
        )
        if version is not None:
            if before is not None and version.pk == before.pk and not publish:
                messages.info(request, f"Nothing changed since v{version.number}.")
            else:
                messages.success(request, _saved_text(version, publish))
            draft = _draft(request, agent)
            if draft is not None:
                services.draft_session_pin(session=draft, version=version)
            return redirect("agents:detail", slug=agent.slug)
        agent.refresh_from_db()
        context = _detail_context(request, agent, form)
        # Still the version the admin opened: resubmitting must not save over a newer one.
        context["based_on"] = id_param(request.POST.get("based_on", ""))
        return render(request, "agents/edit.html", context, status=400)
    form = AgentForm(agent=agent)
    return render(request, "agents/edit.html", _detail_context(request, agent, form))


@role_required("admin")
@require_POST
def draft_start(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Open a new draft chat on the agent's latest saved version."""
    agent = _agent_or_404(slug)
    session = drafts.draft_session_start(agent=agent, author=request.user)
    request.session[DRAFT_KEY.format(slug=agent.slug)] = str(session.pk)
    return redirect(reverse("agents:detail", args=[agent.slug]) + "#draft")


@role_required("admin")
@require_GET
def draft_context(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(slug)
    draft = _draft(request, agent)
    if draft is None:
        raise Http404("No draft chat.")
    context = {"agent": agent, "draft": draft, "context": drafts.draft_context(session=draft)}
    return render(request, "agents/edit.html#context", context)


@role_required("viewer")
@require_GET
def versions(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(slug)
    context = {"agent": agent, "rows": selectors.versions_with_diffs(agent=agent)}
    return render(request, "agents/versions.html", context)


@role_required("viewer")
@require_GET
def version_detail(request: HtmxHttpRequest, slug: str, number: int) -> HttpResponse:
    agent = _agent_or_404(slug)
    version = _version_or_404(agent, number)
    against = selectors.version_previous(version=version)
    if (number_against := id_param(request.GET.get("against", ""))) is not None:
        against = _version_or_404(agent, number_against)
    context = {
        "agent": agent,
        "version": version,
        "against": against,
        "changes": selectors.version_diff(version=version, against=against),
        "settings": selectors.version_settings(version=version),
        "others": selectors.versions_list(agent=agent),
        "gate": agent_version_gate(version=version),
    }
    return render(request, "agents/version.html", context)


@role_required("admin")
@require_POST
def version_publish(request: HtmxHttpRequest, slug: str, number: int) -> HttpResponse:
    """Publish a version: a newer one, or an older one (a rollback). New conversations run
    it; runs in flight keep theirs."""
    agent = _agent_or_404(slug)
    version = _version_or_404(agent, number)
    previous = agent.published_version
    services.agent_version_publish(version=version, actor=request.user)
    verb = (
        "Rolled back to"
        if previous is not None and previous.number > version.number
        else "Published"
    )
    messages.success(request, f"{verb} v{version.number}: new conversations run it.")
    gate = agent_version_gate(version=version)
    if gate is not None and gate.flagged:
        messages.warning(
            request,
            f"v{version.number} is flagged: it scored {gate.score or 0:.2f} in experiment "
            f"{gate.experiment.pk} ({gate.experiment.name}), below its threshold "
            f"{gate.threshold:.2f}.",
        )
    return redirect(next_url(request, fallback=reverse("agents:versions", args=[agent.slug])))
