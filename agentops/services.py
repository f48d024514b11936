"""Writes of the core app (HackSoft style: keyword-only, `<entity>_<action>`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction

from agentops.models import AuditEntry, ModelEndpoint

ROLE_GROUPS = ("admin", "operator", "viewer")


def roles_ensure() -> None:
    for name in ROLE_GROUPS:
        Group.objects.get_or_create(name=name)


def default_endpoint_config() -> dict[str, str]:
    """Where the default endpoint points: OPENAI_BASE_URL, OpenAI itself, or the dev model."""
    if settings.OPENAI_BASE_URL:
        return {
            "base_url": settings.OPENAI_BASE_URL,
            "model": settings.DEFAULT_MODEL or "gpt-4o-mini",
        }
    if settings.OPENAI_API_KEY:
        return {
            "base_url": "https://api.openai.com/v1",
            "model": settings.DEFAULT_MODEL or "gpt-4o-mini",
        }
    return {"base_url": settings.DEVMODEL_URL, "model": settings.DEFAULT_MODEL or "devmodel"}


def endpoint_ensure_default() -> ModelEndpoint:
    config = default_endpoint_config()
    endpoint, _ = ModelEndpoint.objects.get_or_create(
        name="default", defaults={"base_url": config["base_url"], "default_model": config["model"]}
    )
    endpoint.base_url = config["base_url"]
    endpoint.default_model = config["model"]
    endpoint.set_api_key(settings.OPENAI_API_KEY)
    endpoint.save()
    return endpoint


def audit_record(
    *, actor: Any, action: str, session: Any = None, target: str = "", **detail: Any
) -> AuditEntry:
    return AuditEntry.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        session=session,
        target=target[:200],
        detail=detail,
    )


def user_role_set(*, user: Any, role: str, actor: Any) -> None:
    """Give `user` exactly one role ("" for none): the role groups it held are replaced.

    Holding several role groups (possible in the Django admin) means the highest one, so a
    single picker is the safe way to change a role."""
    from agentops.auth import ROLES, user_role

    if role not in ("", *ROLES):
        raise ValueError(f"role: choose one of {', '.join(ROLES)} or none, not {role!r}")
    if user.is_superuser:
        raise ValueError("role: a superuser is always an admin; change it in the Django admin")
    if actor is not None and user.pk == actor.pk:
        raise ValueError("role: you cannot change your own role; ask another admin")
    previous = user_role(user) or ""
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=ROLE_GROUPS))
        if role:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        if role != previous:
            audit_record(
                actor=actor,
                action="user.role_set",
                target=user.get_username(),
                role=role or "none",
                previous=previous or "none",
            )
    user.__dict__.pop("_agentops_role", None)


def user_create(*, form: Any, role: str, actor: Any) -> Any:
    """Create a user from a valid UserCreationForm, with one role."""
    with transaction.atomic():
        user = form.save()
        audit_record(actor=actor, action="user.created", target=user.get_username())
        user_role_set(user=user, role=role, actor=actor)
    return user
