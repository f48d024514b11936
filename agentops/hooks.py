"""What agentops hands the apps below it through their registration hooks (see apps.py):
they know no agentops table, so agentops answers for its own tables.

- memory pages: the agent directory (memory.agents);
- tool pages: which agents may call a tool, the Agent.tools relation (tools.access);
- key rotation: the model endpoints' API keys (tools.rotation);
- retention: old tool calls (tracing.retention; agentops.runtime.retention);
- alerts: the run queue's depth and oldest wait, and the handoffs in breach of a service
  level, as gauges (tracing.alerts).
"""

from __future__ import annotations

from django.db.models import Count

from agentops.models import Agent, ModelEndpoint
from agentops.operators.selectors import handoffs_in_breach_count
from agentops.selectors import run_queue_summary
from memory.agents import MemoryAgent
from tools.access import ToolCaller
from tools.rotation import Rotate


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
    """tools.access.ToolAccess over Agent.tools."""

    through = Agent.tools.through

    def callers(self) -> list[ToolCaller]:
        return [
            ToolCaller(pk, slug)
            for pk, slug in Agent.objects.order_by("slug").values_list("pk", "slug")
        ]

    def callers_of(self, *, tool_id: int) -> list[ToolCaller]:
        rows = Agent.objects.filter(tools__pk=tool_id).order_by("slug").values_list("pk", "slug")
        return [ToolCaller(pk, slug) for pk, slug in rows]

    def callers_set(self, *, tool_id: int, caller_ids: list[int]) -> None:
        links = self.through.objects.filter(tooldefinition_id=tool_id)
        links.exclude(agent_id__in=caller_ids).delete()
        have = set(links.values_list("agent_id", flat=True))
        self.through.objects.bulk_create(
            [self.through(agent_id=a, tooldefinition_id=tool_id) for a in set(caller_ids) - have],
            ignore_conflicts=True,
        )

    def counts(self) -> dict[int, int]:
        rows = self.through.objects.values("tooldefinition_id").annotate(n=Count("agent_id"))
        return {row["tooldefinition_id"]: row["n"] for row in rows}


def endpoint_keys_rotate(rotate: Rotate) -> int:
    """Re-encrypt every model endpoint's API key (a tools.rotation participant)."""
    count = 0
    for endpoint in ModelEndpoint.objects.select_for_update().exclude(api_key_ciphertext=""):
        ModelEndpoint.objects.filter(pk=endpoint.pk).update(
            api_key_ciphertext=rotate(
                endpoint.api_key_ciphertext, f"API key of endpoint {endpoint}"
            )
        )
        count += 1
    return count


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


def sla_breaches(agent: str) -> float:
    """Handoffs (of one agent, or of all) not resolved yet that breached a team's first
    response or resolution target: a rule on it fires while any is left unresolved."""
    return float(handoffs_in_breach_count(agent=agent))
