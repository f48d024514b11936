"""An agent's behaviour as data.

`config_snapshot` reads an Agent row (with its tools and fallbacks) into the JSON an
AgentVersion keeps; `AgentConfig` is what a run drives with, built from the run's version, or
from the Agent row itself for a run without one (runs from before versions, agents made
directly in the database). One module owns the snapshot's shape, so what is saved and what
runs cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentops.models import Agent, ModelEndpoint, Team

if TYPE_CHECKING:
    from agentops.models import AgentVersion, Run

# The fields of Agent that are its behaviour, in the order a diff shows them.
# `max_concurrent_runs` is capacity, not behaviour: it applies on save, unversioned.
SCALAR_FIELDS = (
    "name",
    "model",
    "system_prompt",
    "temperature",
    "max_steps",
    "context_token_budget",
    "memory_enabled",
    "recall_k",
    "retry_max_attempts",
    "retry_base_seconds",
    "retry_cap_seconds",
    "run_max_cost",
    "run_max_tokens",
    "run_max_tool_calls",
    "run_max_seconds",
)

# Fields added to snapshots since versions were first saved, with what an older snapshot means.
SNAPSHOT_DEFAULTS: dict[str, Any] = {
    "builtins_off": [],
    "guardrails": [],
    "transfers": [],
    "agent_tools": [],
    "run_max_cost": None,
    "run_max_tokens": None,
    "run_max_tool_calls": None,
    "run_max_seconds": None,
}

# The tools every agent is offered without ticking them (registered by the runtime,
# agentops/runtime/builtins.py), each one an agent may turn off (`builtins_off` in a snapshot;
# a snapshot without it, saved before, offers them all). The memory ones need memory on.
BUILTIN_TOOLS = ("handoff_to_human", "remember", "recall", "note")
MEMORY_TOOLS = ("remember", "recall")


TRANSFER_HISTORY = ("all", "summary", "last_n")
MAX_TRANSFERS = 10


def transfers_validate(*, value: object, agent_slug: str) -> list[dict[str, Any]]:
    """The agents a version may transfer to, cleaned: each {agent (a slug), description,
    history ("all", "summary" or "last_n" with `turns`)}; errors name the entry and field."""
    from django.core.exceptions import ValidationError

    if not isinstance(value, list) or len(value) > MAX_TRANSFERS:
        raise ValidationError({"transfers": [f"Give a list of up to {MAX_TRANSFERS} transfers."]})
    slugs = set(
        Agent.objects.filter(
            slug__in=[t.get("agent") for t in value if isinstance(t, dict)]
        ).values_list("slug", flat=True)
    )
    cleaned, problems, seen = [], [], set()
    for number, entry in enumerate(value, start=1):
        label = f"#{number}"
        if not isinstance(entry, dict):
            problems.append(f"{label}: give an object.")
            continue
        target = entry.get("agent")
        label += f" ({str(target)[:64]})" if target else ""
        history = entry.get("history", "all")
        turns = entry.get("turns", 3)
        description = entry.get("description", "")
        if target not in slugs:
            problems.append(f"{label} agent: no agent with this slug.")
        elif target == agent_slug:
            problems.append(f"{label} agent: an agent does not transfer to itself.")
        elif target in seen:
            problems.append(f"{label} agent: listed twice.")
        elif not isinstance(description, str) or not description.strip() or len(description) > 1000:
            problems.append(
                f"{label} description: say what the agent handles (up to 1000 characters)."
            )
        elif history not in TRANSFER_HISTORY:
            problems.append(f"{label} history: use one of {', '.join(TRANSFER_HISTORY)}.")
        elif history == "last_n" and not (
            isinstance(turns, int) and not isinstance(turns, bool) and 1 <= turns <= 50
        ):
            problems.append(f"{label} turns: give a whole number of turns from 1 to 50.")
        elif (when := _when_problem(entry.get("when"))) is not None:
            problems.append(f"{label} when: {when}")
        else:
            seen.add(target)
            cleaned.append(
                {
                    "agent": target,
                    "description": description.strip(),
                    "history": history,
                    **({"turns": turns} if history == "last_n" else {}),
                    **({"when": entry["when"]} if entry.get("when") else {}),
                }
            )
    if problems:
        raise ValidationError({"transfers": problems})
    return cleaned


def agent_tools_validate(*, value: object, agent_slug: str) -> list[dict[str, Any]]:
    """The agents a version may call as tools, cleaned: each {agent (a slug), description}."""
    from django.core.exceptions import ValidationError

    if not isinstance(value, list) or len(value) > MAX_TRANSFERS:
        raise ValidationError(
            {"agent_tools": [f"Give a list of up to {MAX_TRANSFERS} agents to call."]}
        )
    targets = [t.get("agent") for t in value if isinstance(t, dict)]
    slugs = set(Agent.objects.filter(slug__in=targets).values_list("slug", flat=True))
    cleaned, problems, seen = [], [], set()
    for number, entry in enumerate(value, start=1):
        if not isinstance(entry, dict):
            problems.append(f"#{number}: give an object.")
            continue
        target, description = entry.get("agent"), entry.get("description", "")
        label = f"#{number}" + (f" ({str(target)[:64]})" if target else "")
        if target not in slugs:
            problems.append(f"{label} agent: no agent with this slug.")
        elif target == agent_slug:
            problems.append(f"{label} agent: an agent does not call itself.")
        elif target in seen:
            problems.append(f"{label} agent: listed twice.")
        elif not isinstance(description, str) or not description.strip() or len(description) > 1000:
            problems.append(f"{label} description: say what it does (up to 1000 characters).")
        else:
            seen.add(target)
            cleaned.append({"agent": target, "description": description.strip()})
    if problems:
        raise ValidationError({"agent_tools": problems})
    return cleaned


ROUTE_KEYS = ("pattern", "end_user", "widget_key", "classify")


def _when_problem(when: object) -> str | None:
    """Why a routing rule is wrong, or None. A rule routes a session's first message before any
    model call: `pattern` (a regex on the message), `end_user` (a regex on the session's end
    user id: a widget's are `key:<widget key id>:…`), `widget_key` (the public key of the
    widget it came through); all given must match. `classify: true` leaves the choice to a
    classifier model call among the transfers asking for it (their rules matching)."""
    import regex

    from agentops.widget.models import WidgetKey

    if when is None or when == {}:
        return None
    if not isinstance(when, dict) or set(when) - set(ROUTE_KEYS):
        return f"give an object of {', '.join(ROUTE_KEYS)}."
    if "classify" in when and when["classify"] is not True:
        return "classify: give true (a classifier chooses among such transfers), or leave it out."
    for key in ("pattern", "end_user", "widget_key"):
        value = when.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > 500:
            return f"{key}: give a text (up to 500 characters)."
        if key == "widget_key":
            if not WidgetKey.objects.filter(public_key=value).exists():
                return "widget_key: no widget key with this public key."
            continue
        try:
            regex.compile(value)
        except regex.error as exc:
            return f"{key}: not a valid pattern: {exc}."
    return None


def config_snapshot(agent: Agent) -> dict[str, Any]:
    """The agent's behaviour as it stands, as plain JSON (ids for related rows)."""
    snapshot: dict[str, Any] = {name: getattr(agent, name) for name in SCALAR_FIELDS}
    snapshot["endpoint"] = agent.endpoint_id
    snapshot["handoff_team"] = agent.handoff_team_id
    snapshot["builtins_off"] = sorted(agent.builtins_off or [])
    snapshot["guardrails"] = list(agent.guardrails or [])
    snapshot["transfers"] = list(agent.transfers or [])
    snapshot["agent_tools"] = list(agent.agent_tools or [])
    snapshot["tools"] = sorted(agent.tools.values_list("pk", flat=True)) if agent.pk else []
    snapshot["fallbacks"] = [
        {"endpoint": f.endpoint_id, "model": f.model}
        for f in (agent.fallbacks.all() if agent.pk else [])
    ]
    return snapshot


def snapshot_complete(config: dict[str, Any]) -> dict[str, Any]:
    """A stored snapshot with the fields added since it was saved, at their defaults."""
    return {**SNAPSHOT_DEFAULTS, **config}


def config_editable(agent: Agent) -> dict[str, Any]:
    """What the builder (and every change of the agent) starts from: its latest saved version
    (not a derived variant), else its settings. Not the row, which a rollback rewrites: an
    edit after publishing v1 again must not undo v2. Ids of rows deleted since are dropped."""
    from tools.models import ToolDefinition

    latest = (
        agent.versions.filter(derived_from=None).order_by("-number").first() if agent.pk else None
    )
    if latest is None:
        return config_snapshot(agent)
    config = snapshot_complete(latest.config)
    endpoints = set(
        ModelEndpoint.objects.filter(
            pk__in=[config["endpoint"], *(f["endpoint"] for f in config["fallbacks"])]
        ).values_list("pk", flat=True)
    )
    team = config.get("handoff_team")
    return {
        **config,
        "tools": sorted(
            ToolDefinition.objects.filter(pk__in=config["tools"]).values_list("pk", flat=True)
        ),
        "fallbacks": [f for f in config["fallbacks"] if f["endpoint"] in endpoints],
        "handoff_team": team if team and Team.objects.filter(pk=team).exists() else None,
    }


@dataclass
class AgentConfig:
    """What a run uses of its agent. `problem` names what made the version unusable (an
    endpoint deleted since it was saved); the run fails with it before its first step."""

    agent: Agent
    version_id: int | None
    version_number: int | None
    endpoint: ModelEndpoint
    model_name: str
    fallbacks: list[tuple[ModelEndpoint, str]]
    system_prompt: str
    temperature: float | None
    tool_ids: list[int]
    max_steps: int
    context_token_budget: int
    memory_enabled: bool
    recall_k: int
    retry_max_attempts: int
    retry_base_seconds: float
    retry_cap_seconds: float
    handoff_team: Team | None
    problem: str = ""
    builtins_off: tuple[str, ...] = ()
    guardrails: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    agent_tools: list[dict[str, Any]] = field(default_factory=list)
    run_max_cost: float | None = None
    run_max_tokens: int | None = None
    run_max_tool_calls: int | None = None
    run_max_seconds: float | None = None

    @property
    def builtins(self) -> list[str]:
        """The built-in tools this config offers (by name)."""
        return [
            name
            for name in BUILTIN_TOOLS
            if name not in self.builtins_off and (self.memory_enabled or name not in MEMORY_TOOLS)
        ]

    @property
    def candidates(self) -> list[tuple[ModelEndpoint, str]]:
        """The model first, then its fallbacks, in order."""
        return [(self.endpoint, self.model_name), *self.fallbacks]


def agent_config_build(
    *, agent: Agent, snapshot: dict[str, Any], version_id: int | None, version_number: int | None
) -> AgentConfig:
    snapshot = snapshot_complete(snapshot)
    endpoint_ids = {snapshot["endpoint"], *(f["endpoint"] for f in snapshot["fallbacks"])}
    # The agent's own endpoint, when it came with the agent (as a run reads it), is not read
    # again: most versions use it and no other.
    endpoints = {agent.endpoint_id: agent.endpoint} if Agent.endpoint.is_cached(agent) else {}
    if missing := endpoint_ids - endpoints.keys():
        endpoints.update(ModelEndpoint.objects.in_bulk(missing))
    problem = ""
    endpoint = endpoints.get(snapshot["endpoint"])
    if endpoint is None:
        problem = (
            f"agent version {version_number} uses model endpoint #{snapshot['endpoint']}, "
            "which was deleted; publish a version with another endpoint"
        )
        endpoint = agent.endpoint
    team_id = snapshot.get("handoff_team")
    return AgentConfig(
        agent=agent,
        version_id=version_id,
        version_number=version_number,
        endpoint=endpoint,
        model_name=snapshot["model"] or endpoint.default_model,
        fallbacks=[
            (endpoints[f["endpoint"]], f["model"] or endpoints[f["endpoint"]].default_model)
            for f in snapshot["fallbacks"]
            if f["endpoint"] in endpoints
        ],
        system_prompt=snapshot["system_prompt"],
        temperature=snapshot["temperature"],
        tool_ids=list(snapshot["tools"]),
        max_steps=snapshot["max_steps"],
        context_token_budget=snapshot["context_token_budget"],
        memory_enabled=snapshot["memory_enabled"],
        recall_k=snapshot["recall_k"],
        retry_max_attempts=snapshot["retry_max_attempts"],
        retry_base_seconds=snapshot["retry_base_seconds"],
        retry_cap_seconds=snapshot["retry_cap_seconds"],
        handoff_team=Team.objects.filter(pk=team_id).first() if team_id else None,
        problem=problem,
        builtins_off=tuple(snapshot["builtins_off"] or ()),
        guardrails=list(snapshot["guardrails"] or []),
        transfers=list(snapshot["transfers"] or []),
        agent_tools=list(snapshot["agent_tools"] or []),
        run_max_cost=snapshot["run_max_cost"],
        run_max_tokens=snapshot["run_max_tokens"],
        run_max_tool_calls=snapshot["run_max_tool_calls"],
        run_max_seconds=snapshot["run_max_seconds"],
    )


def agent_config_for(*, agent: Agent, version: AgentVersion | None) -> AgentConfig:
    """The config of `version`, or of the agent's current settings when there is none."""
    if version is None:
        return agent_config_build(
            agent=agent, snapshot=config_snapshot(agent), version_id=None, version_number=None
        )
    return agent_config_build(
        agent=agent, snapshot=version.config, version_id=version.pk, version_number=version.number
    )


def agent_config_for_run(run: Run) -> AgentConfig:
    """The config the run drives with: its version's, for its whole life (resumes included)."""
    return agent_config_for(agent=run.agent, version=run.agent_version)
