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

from typing import Any

from agentops.agent_config import config_editable
from agentops.models import Agent, AgentVersion, ModelEndpoint
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
