"""Reads of the audit log."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from agentops.models import AuditEntry
from tracing.platform.types import SessionId


def audit_entries(
    *,
    action: str = "",
    actor: str = "",
    session_id: SessionId | None = None,
    since: datetime | None = None,
) -> QuerySet[AuditEntry]:
    qs = AuditEntry.objects.select_related("actor", "session__agent").order_by("-created_at")
    if action:
        qs = qs.filter(action=action)
    if actor:
        qs = qs.filter(actor__username=actor)
    if session_id:
        qs = qs.filter(session_id=session_id)
    if since:
        qs = qs.filter(created_at__gte=since)
    return qs


def audit_actions() -> list[str]:
    return list(AuditEntry.objects.values_list("action", flat=True).distinct().order_by("action"))
