"""What agentops hands the apps below it through their registration hooks (see apps.py):
they know no agentops table, so agentops answers for its own tables.

- memory pages: the agent directory (memory.agents);
- tool pages: which agents may call a tool, the Agent.tools relation (tools.access);
- retention: old tool calls (tracing.retention; agentops.runtime.retention);
- alerts: the run queue's depth and oldest wait, as gauges (tracing.alerts).

And what the core and the runtime announce to the features above them, which subscribe in
their AppConfig.ready() (the announcer knows none of them):

- events: every state change recorded by `agentops.events.event_record` is announced here
  under its kind (HOOKS below names them), in the caller's transaction; the inbox, the
  webhooks and the experiments react (`event_subscribe`);
- periodic jobs: each feature registers its own (`periodic_job_register`), and the
  scheduler's agentops/cron.py registers them all with RQ's cron.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentops.agent_config import config_editable
from agentops.models import Agent, AgentVersion, Handoff, Run
from agentops.selectors import run_queue_summary
from memory.agents import MemoryAgent
from tools.access import ToolCaller

if TYPE_CHECKING:
    from agentops.auth import Actor

# The kinds announced (each is also the live event's `kind`). What each one carries:
HOOKS = {
    "session.created": "a conversation began (`session_id`); not for sandbox ones",
    "session.message": "the end user wrote to a conversation a human has (`session_id`)",
    "message": "a message was stored (`data['message']`: message_serialise)",
    "run.status": "a run's status changed (`run`; `data`: run_status_serialise)",
    "run.job_ended": "a worker is done with a run (`data['run_id']`; `data['sandbox']`: its session is one, "
    "None if unread), however it ended",
    "approval.requested": "a tool call waits for an operator (`data`, `detail['arguments']`)",
    "approval.decided": "an operator approved or rejected it",
    "run.takeover": "an operator asked a running run to stop and hand over",
    "handoff.created": "a conversation was handed to a human (`handoff`)",
    "handoff.claimed": "an operator has the handoff now (`data['operator']`)",
    "handoff.resolved": "closed or handed back (`data['resolution']`)",
    "handoff.escalated": "moved to the escalation team or the admins",
    "handoff.reply": "an operator replied",
    "handoff.note": "a private note was added",
    "handoff.transferred": "passed to another operator or team",
    "handoff.snoozed": "hidden from the queue for a while",
    "handoff.woken": "back in the queue",
    "handoff.sla_breached": "a service level was missed",
    "handoff.rated": "the end user rated the conversation",
    "operator.presence": "an operator went online, away or offline",
    "session.labels": "a conversation's labels changed",
    "labels.changed": "a label was renamed, recoloured or deleted",
    "team.saved": "a team was created or changed (`data['team_id']`)",
    "alert.firing": "the admins must act (`data['message']`), e.g. a webhook endpoint was disabled",
}


@dataclass(frozen=True)
class Event:
    """A state change as announced: what happened (`kind`), who did it, to what, the live
    event's fields (`data`) and what only the audit log and subscribers are told (`detail`)."""

    kind: str
    actor: Actor = None
    session_id: uuid.UUID | str | None = None
    handoff: Handoff | None = None
    run: Run | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)


EventHandler = Callable[[Event], None]
_subscribers: dict[str, list[EventHandler]] = {}


def event_subscribe(*, kinds: Iterable[str], handler: EventHandler) -> None:
    """Call `handler` with each event of these kinds, in the announcer's transaction (work
    that must wait for the commit uses transaction.on_commit). Subscribing twice is once."""
    for kind in kinds:
        if kind not in HOOKS:
            raise ValueError(f"kind: no hook named {kind!r} (see agentops.hooks.HOOKS)")
        handlers = _subscribers.setdefault(kind, [])
        if handler not in handlers:
            handlers.append(handler)


def event_announce(event: Event) -> None:
    if event.kind not in HOOKS:
        raise ValueError(f"kind: no hook named {event.kind!r} (see agentops.hooks.HOOKS)")
    for handler in _subscribers.get(event.kind, ()):
        handler(event)


@dataclass(frozen=True)
class PeriodicJob:
    func: Callable[[], object]
    interval: int  # seconds
    job_timeout: int
    ttl: int


_periodic: list[PeriodicJob] = []


def periodic_job_register(
    *, func: Callable[[], object], interval: int, job_timeout: int, ttl: int
) -> None:
    """A job the scheduler enqueues on MAINTENANCE_QUEUE every `interval` seconds."""
    job = PeriodicJob(func=func, interval=interval, job_timeout=job_timeout, ttl=ttl)
    if all(j.func is not func for j in _periodic):
        _periodic.append(job)


def periodic_jobs() -> list[PeriodicJob]:
    return list(_periodic)


def agent_directory(*, slug: str | None = None, pk: int | None = None) -> list[MemoryAgent]:
    rows = Agent.objects.order_by("slug")
    if slug is not None:
        rows = rows.filter(slug=slug)
    if pk is not None:
        rows = rows.filter(pk=pk)
    return [
        MemoryAgent(pk=pk, slug=slug, name=name)
        for pk, slug, name in rows.values_list("pk", "slug", "name")
    ]


class AgentToolAccess:
    """tools.access.ToolAccess over the agents' tools: those of each agent's latest saved
    version (what its builder edits), else of its settings (an agent with no version).
    Changing them saves a new version of each agent changed, through the agents' service."""

    through = Agent.tools.through

    def _tools(self) -> list[tuple[Agent, set[int], set[int] | None, AgentVersion | None]]:
        """Per agent: its tools as edited, as published (None: nothing published) and the
        latest saved version (None: it has none), in a fixed number of queries."""
        latest = {
            v.agent_id: v
            for v in AgentVersion.objects.filter(derived_from=None)
            .order_by("agent_id", "-number")
            .distinct("agent_id")
        }
        links: dict[int, set[int]] = {}
        for agent_id, tool_id in self.through.objects.values_list("agent_id", "tooldefinition_id"):
            links.setdefault(agent_id, set()).add(tool_id)
        rows = []
        for agent in Agent.objects.select_related("published_version").order_by("slug"):
            version = latest.get(agent.pk)
            edited = set(version.config["tools"]) if version else links.get(agent.pk, set())
            published = agent.published_version
            rows.append(
                (agent, edited, set(published.config["tools"]) if published else None, version)
            )
        return rows

    def callers(self) -> list[ToolCaller]:
        return [
            ToolCaller(pk, slug)
            for pk, slug in Agent.objects.order_by("slug").values_list("pk", "slug")
        ]

    def callers_of(self, *, tool_id: int) -> list[ToolCaller]:
        out = []
        for agent, edited, published, version in self._tools():
            if tool_id not in edited:
                continue
            note = ""
            if version is not None and (published is None or tool_id not in published):
                note = f"v{version.number}, not published yet"
            out.append(ToolCaller(agent.pk, agent.slug, note))
        return out

    def callers_set(self, *, tool_id: int, caller_ids: list[int], actor: Any) -> list[str]:
        from agentops.agents.services import agent_update
        from tools.models import ToolDefinition

        name = ToolDefinition.objects.get(pk=tool_id).name
        wanted = set(caller_ids)
        said = []
        for agent, edited, _, version in self._tools():
            if (tool_id in edited) == (agent.pk in wanted):
                continue
            added = agent.pk in wanted
            # An agent with no version runs its settings as they stand: its first version
            # is published, so it keeps answering (with the tool) as it did before versions.
            publish = version is None and agent.published_version_id is None
            tools = set(config_editable(agent)["tools"])  # without tools deleted since
            saved = agent_update(
                agent=agent,
                changes={"tools": sorted(tools | {tool_id} if added else tools - {tool_id})},
                author=actor,
                note=f"{'gave it' if added else 'took away'} the tool {name} on the tool's page",
                publish=publish,
            )
            said.append(
                f"{agent.slug}: {name} {'added' if added else 'removed'}, saved as "
                f"v{saved.number} "
                + (
                    "and published."
                    if publish
                    else "(not published: it runs once you publish it in the agent builder)."
                )
            )
        return said

    def counts(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for _, edited, _, _ in self._tools():
            for tool_id in edited:
                counts[tool_id] = counts.get(tool_id, 0) + 1
        return counts


def queue_depth(agent: str) -> float:
    """Runs waiting for a worker (held ones included), of one agent or ("") of all."""
    summary = run_queue_summary()
    if not agent:
        return float(summary.queued)
    return float(sum(a.queued for a in summary.agents if a.agent == agent))


def queue_wait(agent: str) -> float:
    """Seconds the oldest queued run (of one agent, or of all) has waited; 0 with none."""
    summary = run_queue_summary()
    rows = [a for a in summary.agents if not agent or a.agent == agent]
    waits = [a.oldest_wait.total_seconds() for a in rows if a.oldest_wait is not None]
    return max(waits, default=0.0)
