"""Reads of the audit log."""

from __future__ import annotations

from datetime import datetime

from django.db.models import QuerySet

from agentops.models import AuditEntry
from tracing.platform.queries import filter_given
from tracing.platform.types import SessionId


def audit_entries(
    *,
    action: str = "",
    actor: str = "",
    session_id: SessionId | None = None,
    since: datetime | None = None,
) -> QuerySet[AuditEntry]:
    return filter_given(
        AuditEntry.objects.select_related("actor", "session__agent").order_by("-created_at"),
        action=action,
        actor__username=actor,
        session_id=session_id,
        created_at__gte=since,
    )


def audit_actions() -> list[str]:
    return list(AuditEntry.objects.values_list("action", flat=True).distinct().order_by("action"))
