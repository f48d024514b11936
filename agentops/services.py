"""Writes of the core app (HackSoft style: keyword-only, `<entity>_<action>`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group

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
