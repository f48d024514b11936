"""Reads of the core app."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from agentops.conversation import Conversation, ConversationItem, ToolCallView, duration_ms
from agentops.models import (
    FINISHED_RUN_STATUSES,
    Agent,
    Handoff,
    HandoffStatus,
    Message,
    Role,
    Run,
    RunStatus,
    Session,
    ToolCall,
)


def operator_loads(*, user_ids: list[int]) -> dict[int, int]:
    """How many conversations each person holds now (claimed handoffs), 0 for none."""
    held = dict(
        Handoff.objects.filter(status=HandoffStatus.CLAIMED, claimed_by_id__in=user_ids)
        .values("claimed_by_id")
        .annotate(n=Count("id"))
        .values_list("claimed_by_id", "n")
    )
    return {pk: held.get(pk, 0) for pk in user_ids}


@dataclass
class AgentQueue:
    agent: str  # slug
    queued: int = 0
    running: int = 0
    oldest_wait: timedelta | None = None  # None when nothing is queued

    @property
    def oldest_wait_ms(self) -> float | None:
        return None if self.oldest_wait is None else self.oldest_wait.total_seconds() * 1000


@dataclass
class RunOutcomes:
    """The one definition of the run outcome figures every page shows (docs/architecture.md,
    "One number, one definition"): over the real conversations' runs (sandbox ones left out)
    created in the window that have finished, the share that succeeded, failed or was
    handed off (asked for or driven to, taken over included). Cancelled runs count as
    finished: the rates of one window add up to at most 100 %."""

    succeeded: int = 0
    failed: int = 0
    handed_off: int = 0
    cancelled: int = 0

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.handed_off + self.cancelled

    def _share(self, part: int) -> float | None:
        return part / self.finished if self.finished else None

    @property
    def success_rate(self) -> float | None:
        return self._share(self.succeeded)

    @property
    def failure_rate(self) -> float | None:
        return self._share(self.failed)

    @property
    def handoff_rate(self) -> float | None:
        return self._share(self.handed_off)


RUN_OUTCOME_GROUPS = ("", "agent__slug", "agent_version")


def run_outcomes(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    agent: str = "",
    version: int | None = None,
    by: str = "",
) -> dict[Any, RunOutcomes]:
    """RunOutcomes for one filter, computed here only: one entry keyed None, or one per agent
    slug (`by="agent__slug"`) or per agent version id (`by="agent_version"`)."""
    if by not in RUN_OUTCOME_GROUPS:
        raise ValueError(f"run outcomes are grouped by one of {RUN_OUTCOME_GROUPS}, not {by!r}")
    qs = Run.objects.production().filter(status__in=FINISHED_RUN_STATUSES)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    if agent:
        qs = qs.filter(agent__slug=agent)
    if version is not None:
        qs = qs.filter(agent_version__number=version)
    counts = {
        field: Count("pk", filter=Q(status=status))
        for field, status in (
            ("succeeded", RunStatus.SUCCEEDED),
            ("failed", RunStatus.FAILED),
            ("handed_off", RunStatus.HANDED_OFF),
            ("cancelled", RunStatus.CANCELLED),
        )
    }
    rows = qs.values(by).annotate(**counts) if by else [qs.aggregate(**counts)]
    out = {(row[by] if by else None): RunOutcomes(**{k: row[k] for k in counts}) for row in rows}
    return out if by else {None: out.get(None) or RunOutcomes()}


@dataclass
class RunQueue:
    queued: int = 0
    running: int = 0
    oldest_wait: timedelta | None = None
    agents: list[AgentQueue] = field(default_factory=list)  # every agent, by slug

    @property
    def oldest_wait_ms(self) -> float | None:
        return None if self.oldest_wait is None else self.oldest_wait.total_seconds() * 1000

    @property
    def busy_agents(self) -> list[AgentQueue]:
        return [a for a in self.agents if a.queued or a.running]


def run_queue_summary(*, now: datetime | None = None) -> RunQueue:
    """Queued and running runs, overall and per agent, from Postgres (not from the RQ queue).

    A queued run has waited since its last enqueue (a woken or retried run is enqueued again),
    or since it was created if its job is not sent yet.
    """
    now = now or timezone.now()
    rows: dict[str, Mapping[str, Any]] = {
        row["agent__slug"]: row
        for row in Run.objects.filter(status__in=(RunStatus.QUEUED, RunStatus.RUNNING))
        .values("agent__slug")
        .annotate(
            queued=Count("pk", filter=Q(status=RunStatus.QUEUED)),
            running=Count("pk", filter=Q(status=RunStatus.RUNNING)),
            since=Min(Coalesce("enqueued_at", "created_at"), filter=Q(status=RunStatus.QUEUED)),
        )
    }
    summary = RunQueue()
    for slug in Agent.objects.order_by("slug").values_list("slug", flat=True):
        row = rows.get(slug, {})
        since = row.get("since")
        agent = AgentQueue(
            agent=slug,
            queued=row.get("queued", 0),
            running=row.get("running", 0),
            oldest_wait=max(now - since, timedelta(0)) if since else None,
        )
        summary.agents.append(agent)
        summary.queued += agent.queued
        summary.running += agent.running
        if agent.oldest_wait is not None:
            summary.oldest_wait = max(summary.oldest_wait or timedelta(0), agent.oldest_wait)
    return summary


def _pretty(arguments: object) -> str:
    if not isinstance(arguments, str):
        return json.dumps(arguments, indent=2)
    try:
        return json.dumps(json.loads(arguments), indent=2, ensure_ascii=False)
    except ValueError:
        return arguments


def conversation_get(
    *, session: Session, after: int = 0, limit: int = 300, newest: bool = True
) -> Conversation:
    """The session's messages above seq `after` — the last `limit` of them (`newest`, for
    pages and the stream) or the first `limit` (the API's paging) — each tool call with its
    recorded status, duration and result, the latest run and the open or claimed handoff.
    Four queries, however long the conversation."""
    rows = session.messages.select_related("author", "agent").filter(seq__gt=after)
    if newest:
        messages: list[Message] = list(reversed(rows.order_by("-seq")[:limit]))
    else:
        messages = list(rows.order_by("seq")[:limit])
    call_ids = {
        tc.get("id", "") for m in messages for tc in m.tool_calls or [] if isinstance(tc, dict)
    } | {m.tool_call_id for m in messages if m.tool_call_id}
    recorded = list(
        ToolCall.objects.filter(run__session=session, call_id__in=call_ids).order_by("started_at")
    )
    calls: dict[tuple[Any, str], ToolCall] = {(c.run_id, c.call_id): c for c in recorded}
    calls_by_id = {c.call_id: c for c in recorded}  # the latest of a call id reused by runs
    results = {(m.run_id, m.tool_call_id): m for m in messages if m.role == Role.TOOL}
    results_by_id = {m.tool_call_id: m for m in messages if m.role == Role.TOOL}
    items: list[ConversationItem] = []
    for m in messages:
        views = []
        for tc in m.tool_calls or []:
            if not isinstance(tc, dict):
                continue
            call_id = tc.get("id", "")
            function = tc.get("function") or {}
            row = calls.get((m.run_id, call_id)) or calls_by_id.get(call_id)
            result = results.get((m.run_id, call_id)) or results_by_id.get(call_id)
            if row is not None:
                status = row.status
            elif result is not None:
                status = "failed" if result.content.startswith("Error") else "succeeded"
            else:
                status = "started"
            views.append(
                ToolCallView(
                    call_id=call_id,
                    name=function.get("name", "?"),
                    arguments=_pretty(function.get("arguments", "")),
                    status=status,
                    duration_ms=duration_ms(row),
                    result=result.content if result is not None else None,
                    result_seq=result.seq if result is not None else None,
                )
            )
        items.append(ConversationItem(message=m, tool_calls=views))
    # A result is shown with its call; one whose call is not in view stands on its own.
    folded = {tc.result_seq for item in items for tc in item.tool_calls}
    items = [item for item in items if item.seq not in folded]
    run = (
        Run.objects.select_related("agent").filter(session=session).order_by("-created_at").first()
    )
    handoff = (
        Handoff.objects.select_related("claimed_by", "team")
        .filter(session=session, status__in=[HandoffStatus.OPEN, HandoffStatus.CLAIMED])
        .order_by("-created_at")
        .first()
    )
    return Conversation(
        session=session,
        messages=messages,
        items=items,
        tool_calls={c.call_id: c for c in recorded},
        run=run,
        handoff=handoff,
    )
