"""Agents, their versions and feedback through the API, under the pages' rules: anyone with a
role reads; admins create, change, publish and derive agents; operators give feedback.
Settings use the snapshot's shape (agentops/agent_config.py): related rows by id. Bad input
is a 422 naming the field; nothing is stored then."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Path, Query, Router, Schema, Status
from ninja.errors import HttpError
from pydantic import ConfigDict, Field

from agentops.agent_config import BUILTIN_TOOLS, config_editable
from agentops.agents import selectors, services
from agentops.api import (
    BODY_ERRORS,
    FOUND_ERRORS,
    MAX_INT,
    Text,
)
from agentops.auth import role_require
from agentops.budgets import selectors as budget_selectors
from agentops.budgets import services as budget_services
from agentops.budgets.models import Budget, BudgetAction, BudgetMetric, BudgetPeriod, BudgetScope
from agentops.budgets.selectors import BudgetSpend, WindowSpend
from agentops.feedback.selectors import feedback_list
from agentops.feedback.services import MAX_COMMENT_CHARS, feedback_give
from agentops.models import Agent, AgentVersion, Feedback, FeedbackRating, Message, Run
from tracing.platform.errors import Invalid

router: Router = Router(tags=["agents"])

Slug = Annotated[str, Path(max_length=64)]
Number = Annotated[int, Path(ge=1, le=MAX_INT)]
WRITE_ERRORS = {**FOUND_ERRORS, **BODY_ERRORS}
Id = Annotated[int, Field(ge=1, le=MAX_INT)]


class FallbackIn(Schema):
    endpoint: Id
    model: Text = Field(default="", max_length=200, description="Empty: the endpoint's default")


class AgentSettingsFields(Schema):
    """An agent version's settings, each optional."""

    name: Text | None = Field(default=None, max_length=200)
    system_prompt: Text | None = Field(default=None, max_length=100_000)
    endpoint: Id | None = None
    model: Text | None = Field(default=None, max_length=200)
    temperature: float | None = Field(default=None, ge=0, le=2)
    fallbacks: list[FallbackIn] | None = None
    tools: list[Id] | None = None
    builtins_off: list[Text] | None = Field(
        default=None,
        description="Built-in tools not offered to the model, of: " + ", ".join(BUILTIN_TOOLS),
    )
    memory_enabled: bool | None = None
    recall_k: int | None = Field(default=None, ge=0, le=50)
    context_token_budget: int | None = Field(default=None, ge=256, le=MAX_INT)
    max_steps: int | None = Field(default=None, ge=1, le=MAX_INT)
    retry_max_attempts: int | None = Field(default=None, ge=1, le=100)
    retry_base_seconds: float | None = Field(default=None, ge=0, le=3600)
    retry_cap_seconds: float | None = Field(default=None, ge=0, le=86_400)
    run_max_cost: float | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="USD a run may spend (estimated from the price table); null: no limit",
    )
    run_max_tokens: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="Model tokens in and out; null: no limit"
    )
    run_max_tool_calls: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="Tool calls a run may make; null: no limit"
    )
    run_max_seconds: float | None = Field(
        default=None,
        ge=1,
        le=86_400 * 7,
        description="Wall time from a run's start, waits included; null: no limit",
    )
    handoff_team: Id | None = None
    guardrails: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=20,
        description=(
            "Checked in order. Each: name, stage (input, output, tool_arguments, tool_result), "
            "kind (terms, regex, pii, classifier, json_schema), action (block, redact, "
            "handoff, flag, approval) and its kind's fields (terms, patterns, entities, "
            "region, rubric, endpoint, model, mode, schema, tools, message); errors name the "
            "guardrail by position and field"
        ),
    )
    transfers: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=10,
        description=(
            "Agents the model may transfer the conversation to: each {agent: slug, description,"
            " history: all | summary | last_n, turns (for last_n), when (routing of a session's"
            " first message before any model call: {pattern, end_user, widget_key} rules, all"
            " given must match; classify: true lets one classifier model call choose among such"
            " transfers)}"
        ),
    )
    agent_tools: list[dict[str, Any]] | None = Field(
        default=None,
        max_length=10,
        description="Agents the model may call as tools: each {agent: slug, description}",
    )


class SettingsIn(AgentSettingsFields):
    """Leave a field out to keep it; `null` is a value (for temperature, handoff_team and
    max_concurrent_runs: the default)."""

    max_concurrent_runs: int | None = Field(default=None, ge=0, le=MAX_INT)
    note: Text = Field(default="", max_length=500, description="Kept with the new version")
    publish: bool = Field(default=False, description="Make the new version the published one")


class VersionChangesIn(AgentSettingsFields):
    """The settings to change; the others stay as in the version derived from."""

    model_config = ConfigDict(extra="forbid")


class AgentCreateIn(SettingsIn):
    slug: Text = Field(min_length=1, max_length=64)
    name: Text = Field(min_length=1, max_length=200)
    endpoint: Id


class VersionOut(Schema):
    agent: str
    number: int
    author: str | None
    note: str
    created_at: datetime
    published: bool = Field(description="It is the version new conversations run")
    published_at: datetime | None
    derived_from: int | None
    config: dict[str, Any]


class AgentOut(Schema):
    slug: str
    name: str
    published_version: int | None
    latest_version: int | None
    max_concurrent_runs: int | None
    settings: dict[str, Any] = Field(description="The current settings, as a version keeps them")
    created_at: datetime
    updated_at: datetime


class ChangeOut(Schema):
    field: str
    label: str
    before: str
    after: str
    lines: list[str] = Field(description="A unified diff of the instructions")


class DiffOut(Schema):
    version: int
    against: int | None
    changes: list[ChangeOut]


class DeriveIn(Schema):
    changes: VersionChangesIn = Field(description="Settings to change, in the snapshot's shape")
    note: Text = Field(default="", max_length=500)


class FeedbackIn(Schema):
    rating: FeedbackRating
    score: int | None = Field(default=None, ge=1, le=5)
    comment: Text = Field(default="", max_length=MAX_COMMENT_CHARS)


class FeedbackOut(Schema):
    id: int
    run: uuid.UUID | None
    message: int | None
    version: int | None
    author: str
    rating: FeedbackRating
    score: int | None
    comment: str
    created_at: datetime
    updated_at: datetime


def _agent(slug: str) -> Agent:
    return get_object_or_404(Agent.objects.select_related("published_version"), slug=slug)


def version_out(version: AgentVersion, agent: Agent) -> dict[str, Any]:
    return {
        "agent": agent.slug,
        "number": version.number,
        "author": version.author.get_username() if version.author else None,
        "note": version.note,
        "created_at": version.created_at,
        "published": agent.published_version_id == version.pk,
        "published_at": version.published_at,
        "derived_from": version.derived_from.number if version.derived_from else None,
        "config": version.config,
    }


def agent_out(agent: Agent) -> dict[str, Any]:
    latest = selectors.agent_latest_saved(agent=agent)
    return {
        "slug": agent.slug,
        "name": agent.name,
        "published_version": agent.published_version.number if agent.published_version else None,
        "latest_version": latest.number if latest else None,
        "max_concurrent_runs": agent.max_concurrent_runs,
        "settings": config_editable(agent),  # what PATCH changes: the latest saved version
        "created_at": agent.created_at,
        "updated_at": agent.updated_at,
    }


def feedback_out(f: Feedback) -> dict[str, Any]:
    version = f.run.agent_version if f.run_id and f.run else None
    return {
        "id": f.pk,
        "run": f.run_id,
        "message": f.message_id,
        "version": version.number if version else None,
        "author": f.author.get_username(),
        "rating": f.rating,
        "score": f.score,
        "comment": f.comment,
        "created_at": f.created_at,
        "updated_at": f.updated_at,
    }


def _settings(payload: SettingsIn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(snapshot changes, other arguments) from what the caller sent."""
    sent = payload.dict(exclude_unset=True)
    extra: dict[str, Any] = {
        k: sent.pop(k) for k in ("note", "publish", "max_concurrent_runs") if k in sent
    }
    sent.pop("slug", None)
    return sent, extra


# -- agents --------------------------------------------------------------------------------
@router.get("/agents", response={200: list[AgentOut], **FOUND_ERRORS}, summary="List agents")
def list_agents(request: HttpRequest) -> list[dict[str, Any]]:
    role_require(user=request.user, role="viewer")
    agents = Agent.objects.select_related("published_version").prefetch_related(
        "tools", "fallbacks"
    )
    return [agent_out(a) for a in agents.order_by("slug")]


@router.get("/agents/{slug}", response={200: AgentOut, **FOUND_ERRORS})
def get_agent(request: HttpRequest, slug: Slug) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    return agent_out(_agent(slug))


@router.post(
    "/agents",
    response={201: VersionOut, **WRITE_ERRORS},
    summary="Create an agent (its first version)",
)
def create_agent(request: HttpRequest, payload: AgentCreateIn) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="admin")
    config, extra = _settings(payload)
    version = services.agent_create(
        slug=payload.slug,
        config=config,
        author=request.user,
        max_concurrent_runs=extra.get("max_concurrent_runs"),
        note=extra.get("note", ""),
        publish=extra.get("publish", False),
    )
    return Status(201, version_out(version, Agent.objects.get(pk=version.agent_id)))


@router.patch(
    "/agents/{slug}",
    response={200: VersionOut, **WRITE_ERRORS},
    summary="Change an agent: saves a new version (or returns the latest if nothing changed)",
)
def update_agent(
    request: HttpRequest, slug: Slug, payload: SettingsIn
) -> Status[dict[str, Any]] | dict[str, Any]:
    role_require(user=request.user, role="admin")
    agent = _agent(slug)
    changes, extra = _settings(payload)
    capacity = (
        {"max_concurrent_runs": extra["max_concurrent_runs"]}
        if "max_concurrent_runs" in extra
        else {}
    )
    version = services.agent_update(
        agent=agent,
        changes=changes,
        author=request.user,
        note=extra.get("note", ""),
        publish=extra.get("publish", False),
        **capacity,
    )
    agent.refresh_from_db()
    return version_out(version, agent)


# -- versions ------------------------------------------------------------------------------
@router.get("/agents/{slug}/versions", response={200: list[VersionOut], **FOUND_ERRORS})
def list_versions(request: HttpRequest, slug: Slug) -> list[dict[str, Any]]:
    role_require(user=request.user, role="viewer")
    agent = _agent(slug)
    return [version_out(v, agent) for v in selectors.versions_list(agent=agent)]


def _version(agent: Agent, number: int) -> AgentVersion:
    version = selectors.version_get(agent=agent, number=number)
    if version is None:
        raise HttpError(404, f"number: {agent.slug} has no version {number}")
    return version


@router.get("/agents/{slug}/versions/{number}", response={200: VersionOut, **FOUND_ERRORS})
def get_version(request: HttpRequest, slug: Slug, number: Number) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    agent = _agent(slug)
    return version_out(_version(agent, number), agent)


@router.get(
    "/agents/{slug}/versions/{number}/diff",
    response={200: DiffOut, **FOUND_ERRORS},
    summary="What changed: against the version before it (or the one it was derived from)",
)
def diff_version(
    request: HttpRequest,
    slug: Slug,
    number: Number,
    against: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    agent = _agent(slug)
    version = _version(agent, number)
    base = _version(agent, against) if against else selectors.version_previous(version=version)
    changes = selectors.version_diff(version=version, against=base)
    return {
        "version": version.number,
        "against": base.number if base else None,
        "changes": [
            {
                "field": c.name,
                "label": c.label,
                "before": c.before,
                "after": c.after,
                "lines": c.lines,
            }
            for c in changes
        ],
    }


@router.post(
    "/agents/{slug}/versions/{number}/publish",
    response={200: VersionOut, **WRITE_ERRORS},
    summary="Publish a version (an older one: a rollback); runs in flight keep theirs",
)
def publish_version(request: HttpRequest, slug: Slug, number: Number) -> dict[str, Any]:
    role_require(user=request.user, role="admin")
    agent = _agent(slug)
    version = services.agent_version_publish(version=_version(agent, number), actor=request.user)
    agent.refresh_from_db()
    return version_out(version, agent)


@router.post(
    "/agents/{slug}/versions/{number}/derive",
    response={201: VersionOut, **WRITE_ERRORS},
    summary="A new unpublished version: this one with some settings changed",
)
def derive_version(
    request: HttpRequest, slug: Slug, number: Number, payload: DeriveIn
) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="admin")
    agent = _agent(slug)
    derived = services.agent_version_derive(
        version=_version(agent, number),
        changes=payload.changes.model_dump(exclude_unset=True),
        author=request.user,
        note=payload.note,
    )
    return Status(201, version_out(derived, agent))


# -- feedback ------------------------------------------------------------------------------
def _feedback(
    request: HttpRequest, payload: FeedbackIn, *, run: Run | None, message: Message | None
) -> Status[dict[str, Any]]:
    user: Any = request.user
    existed = Feedback.objects.filter(
        author=user, message=message, **({"run": run} if run else {})
    ).exists()
    feedback = feedback_give(
        author=request.user,
        run=run,
        message=message,
        rating=payload.rating,
        score=payload.score,
        comment=payload.comment,
    )
    feedback = Feedback.objects.select_related("author", "run__agent_version").get(pk=feedback.pk)
    return Status(200 if existed else 201, feedback_out(feedback))


@router.post(
    "/runs/{run_id}/feedback",
    response={201: FeedbackOut, 200: FeedbackOut, **WRITE_ERRORS},
    summary="Score a run; scoring it again replaces your feedback (200)",
    tags=["feedback"],
)
def create_run_feedback(
    request: HttpRequest, run_id: uuid.UUID, payload: FeedbackIn
) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    return _feedback(request, payload, run=get_object_or_404(Run, pk=run_id), message=None)


@router.post(
    "/messages/{message_id}/feedback",
    response={201: FeedbackOut, 200: FeedbackOut, **WRITE_ERRORS},
    summary="Score a message; scoring it again replaces your feedback (200)",
    tags=["feedback"],
)
def create_message_feedback(
    request: HttpRequest, message_id: Annotated[int, Path(ge=1, le=MAX_INT)], payload: FeedbackIn
) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    message = get_object_or_404(Message, pk=message_id)
    return _feedback(request, payload, run=None, message=message)


@router.get("/feedback", response={200: list[FeedbackOut], **FOUND_ERRORS}, tags=["feedback"])
def list_feedback(
    request: HttpRequest,
    run: uuid.UUID | None = None,
    message: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
    agent: Annotated[str, Query(max_length=64)] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Newest first; `run` includes the feedback on its messages."""
    role_require(user=request.user, role="viewer")
    return [
        feedback_out(f)
        for f in feedback_list(run_id=run, message_id=message, agent=agent, limit=limit)
    ]


# -- budgets -------------------------------------------------------------------------------
class BudgetIn(Schema):
    """A budget: what one agent, end user, API key or widget key may spend in a window."""

    name: Text = Field(min_length=1, max_length=100)
    scope: BudgetScope
    agent: Text | None = Field(
        default=None, max_length=64, description="An agent's slug: only its runs count"
    )
    subject: Text = Field(
        default="",
        max_length=200,
        description="One end user's id, or a key's id; empty: each one separately",
    )
    metric: BudgetMetric
    period: BudgetPeriod = Field(description="runs: per minute; tokens and cost: day or month")
    limit: float = Field(ge=0, le=1e12)
    on_limit: BudgetAction = BudgetAction.REFUSE
    enabled: bool = True


class BudgetPatch(Schema):
    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(default=None, min_length=1, max_length=100)
    limit: float | None = Field(default=None, ge=0, le=1e12)
    on_limit: BudgetAction | None = None
    enabled: bool | None = None


class WindowOut(Schema):
    subject: str = Field(description="Empty in `windows`: every subject summed")
    window_start: datetime
    used: float
    reserved: float = Field(description="Held by runs in flight, released as they spend")
    percent: float


class BudgetOut(Schema):
    id: int
    name: str
    scope: BudgetScope
    agent: str | None
    subject: str
    metric: BudgetMetric
    period: BudgetPeriod
    limit: float
    on_limit: BudgetAction
    enabled: bool
    run_estimate: float = Field(description="What one run is expected to spend (learned)")
    current: list[WindowOut] = Field(description="The current window, fullest subject first")
    windows: list[WindowOut] = Field(description="The last 14 windows, newest first")


def _window_out(window: WindowSpend) -> dict[str, Any]:
    return {
        "subject": window.subject,
        "window_start": window.window_start,
        "used": float(window.used),
        "reserved": float(window.reserved),
        "percent": round(window.percent, 2),
    }


def budget_out(spend: BudgetSpend) -> dict[str, Any]:
    budget = spend.budget
    return {
        "id": budget.pk,
        "name": budget.name,
        "scope": budget.scope,
        "agent": budget.agent.slug if budget.agent else None,
        "subject": budget.subject,
        "metric": budget.metric,
        "period": budget.period,
        "limit": float(budget.limit),
        "on_limit": budget.on_limit,
        "enabled": budget.enabled,
        "run_estimate": float(budget.run_estimate),
        "current": [_window_out(w) for w in spend.current],
        "windows": [_window_out(w) for w in spend.windows],
    }


def _budget(budget_id: int) -> Budget:
    budget = budget_selectors.budget_get(budget_id=budget_id)
    if budget is None:
        raise HttpError(404, f"budget: no budget {budget_id}")
    return budget


def _budget_agent(slug: str | None) -> Agent | None:
    if not slug:
        return None
    agent = Agent.objects.filter(slug=slug).first()
    if agent is None:
        raise Invalid(f"no agent with slug {slug!r}", field="agent")
    return agent


BudgetId = Annotated[int, Path(ge=1, le=MAX_INT)]


@router.get(
    "/budgets",
    response={200: list[BudgetOut], **FOUND_ERRORS},
    summary="Budgets, with what each has spent",
    tags=["budgets"],
)
def list_budgets(request: HttpRequest, agent: Annotated[str, Query(max_length=64)] = "") -> Any:
    role_require(user=request.user, role="viewer")
    agent_id = (
        Agent.objects.filter(slug=agent).values_list("pk", flat=True).first() if agent else None
    )
    if agent and agent_id is None:
        return []  # no such agent: no budget counts its runs
    budgets = list(budget_selectors.budgets_list(agent_id=agent_id))
    return [budget_out(s) for s in budget_selectors.budget_spend(budgets=budgets)]


@router.get(
    "/budgets/{budget_id}",
    response={200: BudgetOut, **FOUND_ERRORS},
    tags=["budgets"],
)
def get_budget(request: HttpRequest, budget_id: BudgetId) -> Any:
    role_require(user=request.user, role="viewer")
    return budget_out(budget_selectors.budget_spend(budgets=[_budget(budget_id)])[0])


@router.post(
    "/budgets",
    response={201: BudgetOut, **WRITE_ERRORS},
    summary="Create a budget (runs per minute, tokens or cost per day or month)",
    tags=["budgets"],
)
def create_budget(request: HttpRequest, payload: BudgetIn) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="admin")
    values = payload.dict()
    values["agent"] = _budget_agent(values["agent"])
    values["limit"] = Decimal(str(values["limit"]))
    budget = budget_services.budget_create(actor=request.user, **values)
    return Status(201, budget_out(budget_selectors.budget_spend(budgets=[budget])[0]))


@router.patch(
    "/budgets/{budget_id}",
    response={200: BudgetOut, **WRITE_ERRORS},
    summary="Change a budget's name, limit, action at the limit, or turn it off",
    tags=["budgets"],
)
def update_budget(request: HttpRequest, budget_id: BudgetId, payload: BudgetPatch) -> Any:
    role_require(user=request.user, role="admin")
    values = payload.dict(exclude_unset=True)
    for name in ("name", "limit", "on_limit", "enabled"):
        if name in values and values[name] is None:
            raise Invalid("must not be null", field=name)
    if "limit" in values:
        values["limit"] = Decimal(str(values["limit"]))
    budget = budget_services.budget_update(budget=_budget(budget_id), actor=request.user, **values)
    return budget_out(budget_selectors.budget_spend(budgets=[budget])[0])


@router.delete(
    "/budgets/{budget_id}",
    response={204: None, **FOUND_ERRORS},
    tags=["budgets"],
)
def delete_budget(request: HttpRequest, budget_id: BudgetId) -> Status[None]:
    role_require(user=request.user, role="admin")
    budget_services.budget_delete(budget_id=_budget(budget_id).pk, actor=request.user)
    return Status(204, None)
