"""Agent versions: every saved change is an immutable snapshot; publishing one makes it the
version new conversations run. Runs keep the version they started with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeGuard

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from agentops.agent_config import (
    BUILTIN_TOOLS,
    SCALAR_FIELDS,
    agent_tools_validate,
    config_editable,
    config_snapshot,
    snapshot_complete,
    transfers_validate,
)
from agentops.events import audit_record
from agentops.guardrails.spec import guardrails_validate
from agentops.models import (
    Agent,
    AgentFallback,
    AgentVersion,
    ModelEndpoint,
    Session,
    Team,
    slug_validator,
)
from tools.models import ToolDefinition

if TYPE_CHECKING:
    from agentops.auth import Actor

CHANGEABLE = (
    *SCALAR_FIELDS,
    "endpoint",
    "handoff_team",
    "tools",
    "fallbacks",
    "builtins_off",
    "guardrails",
    "transfers",
    "agent_tools",
)


def _author(actor: Actor) -> User | None:
    return actor if isinstance(actor, User) and actor.is_authenticated else None


@transaction.atomic
def agent_version_create(
    *, agent: Agent, author: Actor, note: str = "", publish: bool = False
) -> AgentVersion:
    """Snapshot the agent's current settings as its next version (or return the latest one
    if nothing changed since). With `publish`, it becomes the version new runs use."""
    Agent.objects.select_for_update().filter(pk=agent.pk).get()
    snapshot = config_snapshot(agent)
    latest = agent.versions.order_by("-number").first()
    saved = agent.versions.filter(derived_from=None).order_by("-number").first()
    if saved is not None and snapshot_complete(saved.config) == snapshot:
        version = saved
    else:
        version = AgentVersion.objects.create(
            agent=agent,
            number=(latest.number if latest else 0) + 1,
            config=snapshot,
            author=_author(author),
            note=note[:500],
        )
        audit_record(
            actor=author, action="agent.version", target=agent.slug, version=version.number
        )
    if publish:
        agent_version_publish(version=version, actor=author)
    return version


@transaction.atomic
def agent_version_publish(*, version: AgentVersion, actor: Actor) -> AgentVersion:
    """Make `version` the one new conversations run, and the agent's settings match it (so a
    rollback is publishing an older version). Runs in flight keep theirs."""
    agent = Agent.objects.select_for_update().get(pk=version.agent_id)
    previous = agent.published_version_id
    agent_settings_restore(agent=agent, config=version.config)
    agent.published_version = version
    agent.save()
    AgentVersion.objects.filter(pk=version.pk).update(published_at=timezone.now())
    version.refresh_from_db(fields=["published_at"])
    audit_record(
        actor=actor,
        action="agent.publish",
        target=agent.slug,
        version=version.number,
        previous_version_id=previous,
    )
    return version


def agent_settings_restore(*, agent: Agent, config: dict[str, Any]) -> None:
    """Write a snapshot back onto the agent's row, its tools and its fallbacks (unsaved row)."""
    config = snapshot_complete(config)
    for name in SCALAR_FIELDS:
        setattr(agent, name, config[name])
    agent.endpoint_id = config["endpoint"]
    agent.handoff_team_id = config["handoff_team"]
    agent.builtins_off = sorted(config["builtins_off"] or [])
    agent.guardrails = list(config["guardrails"] or [])
    agent.transfers = list(config["transfers"] or [])
    agent.agent_tools = list(config["agent_tools"] or [])
    agent.save()
    agent.tools.set(ToolDefinition.objects.filter(pk__in=config["tools"]))
    agent.fallbacks.all().delete()
    AgentFallback.objects.bulk_create(
        AgentFallback(agent=agent, position=i, endpoint_id=f["endpoint"], model=f["model"])
        for i, f in enumerate(config["fallbacks"])
    )


def _is_id(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def agent_config_validate(*, config: dict[str, Any], slug: str = "") -> dict[str, Any]:
    """Check a whole snapshot (as changed by a caller) field by field; errors name the field."""
    errors: dict[str, list[str]] = {}
    endpoint_id: Any = config.get("endpoint")
    probe = Agent(slug="probe", endpoint_id=endpoint_id)
    for name in SCALAR_FIELDS:
        setattr(probe, name, config.get(name))
        # clean_fields lets None through for blank fields (model, instructions): not here.
        if config.get(name) is None and not Agent._meta.get_field(name).null:
            errors[name] = ["This field cannot be null."]
    try:
        probe.clean_fields(exclude=["slug", "endpoint", "handoff_team", "published_version"])
    except ValidationError as exc:
        errors = {**exc.message_dict, **errors}
    temperature = probe.temperature  # as cleaned: a number, or None
    if "temperature" not in errors and temperature is not None and not 0 <= temperature <= 2:
        errors["temperature"] = ["Give a temperature from 0 to 2, or none for the model's own."]
    if not _is_id(endpoint_id) or not ModelEndpoint.objects.filter(pk=endpoint_id).exists():
        errors["endpoint"] = [f"No model endpoint with id {endpoint_id!r}."]
    team: Any = config.get("handoff_team")
    if team is not None and (not _is_id(team) or not Team.objects.filter(pk=team).exists()):
        errors["handoff_team"] = [f"No team with id {team!r}."]
    tools = config.get("tools")
    if (
        not isinstance(tools, list)
        or not all(_is_id(t) for t in tools)
        or len(set(tools)) != ToolDefinition.objects.filter(pk__in=tools).count()
    ):
        errors["tools"] = ["Give a list of existing tool ids."]
    fallbacks = config.get("fallbacks")
    if not isinstance(fallbacks, list) or any(
        not isinstance(f, dict)
        or not isinstance(f.get("model", ""), str)
        or not _is_id(f.get("endpoint"))
        or not ModelEndpoint.objects.filter(pk=f["endpoint"]).exists()
        for f in fallbacks
    ):
        errors["fallbacks"] = [
            "Give a list of {endpoint: id, model: name} with existing endpoints."
        ]
    builtins_off = config.get("builtins_off", [])
    if not isinstance(builtins_off, list) or any(b not in BUILTIN_TOOLS for b in builtins_off):
        errors["builtins_off"] = [
            "Give a list of built-in tools to turn off, from: " + ", ".join(BUILTIN_TOOLS) + "."
        ]
    try:
        guardrails = guardrails_validate(
            value=config.get("guardrails", []),
            endpoints=set(ModelEndpoint.objects.values_list("pk", flat=True)),
        )
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        transfers = transfers_validate(value=config.get("transfers", []), agent_slug=slug)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        agent_tools = agent_tools_validate(value=config.get("agent_tools", []), agent_slug=slug)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    # Stored as cleaned ("7" is 7), fallbacks in their one shape: a run reads them as they are.
    return {
        **config,
        **{name: getattr(probe, name) for name in SCALAR_FIELDS},
        "fallbacks": [
            {"endpoint": f["endpoint"], "model": f.get("model", "")} for f in fallbacks or ()
        ],
        "builtins_off": sorted(set(builtins_off)),
        "guardrails": guardrails,
        "transfers": transfers,
        "agent_tools": agent_tools,
    }


@transaction.atomic
def agent_version_derive(
    *, version: AgentVersion, changes: dict[str, Any], author: Actor, note: str = ""
) -> AgentVersion:
    """A new, unpublished version: `version` with `changes` (another model, other
    instructions…), for an experiment or a fork. The agent's own settings are untouched."""
    unknown = sorted(set(changes) - set(CHANGEABLE))
    if unknown:
        raise ValidationError({name: ["Not a setting of an agent version."] for name in unknown})
    config = agent_config_validate(
        config={**snapshot_complete(version.config), **changes}, slug=version.agent.slug
    )
    Agent.objects.select_for_update().filter(pk=version.agent_id).get()
    latest = AgentVersion.objects.filter(agent_id=version.agent_id).order_by("-number").first()
    assert latest is not None
    derived = AgentVersion.objects.create(
        agent_id=version.agent_id,
        number=latest.number + 1,
        config=config,
        author=_author(author),
        note=(note or f"derived from v{version.number}")[:500],
        derived_from=version,
    )
    audit_record(
        actor=author,
        action="agent.version",
        target=derived.agent.slug,
        version=derived.number,
        derived_from=version.number,
    )
    return derived


def _capacity_validate(value: object) -> int | None:
    if value is None:
        return None
    if not _is_id(value) or value < 0:
        raise ValidationError(
            {"max_concurrent_runs": ["Give a whole number (0: no limit), or none for the default."]}
        )
    return value


@transaction.atomic
def agent_create(
    *,
    slug: str,
    config: dict[str, Any],
    author: Actor,
    max_concurrent_runs: int | None = None,
    note: str = "",
    publish: bool = False,
) -> AgentVersion:
    """A new agent from `config` (the snapshot's fields; left out ones take the defaults), with
    its first version. Errors name the field."""
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(config) - set(CHANGEABLE))
    for name in unknown:
        errors[name] = ["Not a setting of an agent."]
    try:
        slug_validator(slug)
    except ValidationError as exc:
        errors["slug"] = exc.messages
    else:
        if Agent.objects.filter(slug=slug).exists():
            errors["slug"] = [f"An agent {slug!r} exists already."]
    try:
        full = agent_config_validate(config={**config_snapshot(Agent()), **config}, slug=slug)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    try:
        capacity = _capacity_validate(max_concurrent_runs)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    agent = Agent(slug=slug, endpoint_id=full["endpoint"], max_concurrent_runs=capacity)
    try:
        with transaction.atomic():  # created meanwhile by another admin: the same error
            agent_settings_restore(agent=agent, config=full)
    except IntegrityError:
        raise ValidationError({"slug": [f"An agent {slug!r} exists already."]}) from None
    audit_record(actor=author, action="agent.create", target=slug)
    return agent_version_create(agent=agent, author=author, note=note or "created", publish=publish)


class _Unset:
    """An argument not given (None is a value here)."""


_UNSET = _Unset()


@transaction.atomic
def agent_update(
    *,
    agent: Agent,
    changes: dict[str, Any],
    author: Actor,
    max_concurrent_runs: int | _Unset | None = _UNSET,
    note: str = "",
    publish: bool = False,
    based_on: int | None = None,
) -> AgentVersion:
    """Change the agent's latest saved version (`config_editable`: not what a rollback
    published) and save the result as its next version (the latest one when nothing
    changed); with `publish`, new conversations run it. With `based_on`, the number of the
    version the caller edited: refused if another was saved since. Errors name the field and
    store nothing."""
    unknown = sorted(set(changes) - set(CHANGEABLE))
    if unknown:
        raise ValidationError({name: ["Not a setting of an agent."] for name in unknown})
    Agent.objects.select_for_update().filter(pk=agent.pk).get()
    latest = agent.versions.filter(derived_from=None).order_by("-number").first()
    if based_on is not None and latest is not None and latest.number != based_on:
        raise ValidationError(
            f"v{latest.number} was saved since you opened v{based_on}: nothing was saved. "
            "Reload the agent to edit its latest version."
        )
    config = agent_config_validate(config={**config_editable(agent), **changes}, slug=agent.slug)
    if not isinstance(max_concurrent_runs, _Unset):
        agent.max_concurrent_runs = _capacity_validate(max_concurrent_runs)
    agent_settings_restore(agent=agent, config=config)
    return agent_version_create(agent=agent, author=author, note=note, publish=publish)


def draft_session_pin(*, session: Session, version: AgentVersion) -> None:
    """Move a draft chat onto a newer saved version: its next run uses it."""
    if session.agent_id == version.agent_id and session.agent_version_id != version.pk:
        session.agent_version = version
        session.save(update_fields=["agent_version", "updated_at"])
