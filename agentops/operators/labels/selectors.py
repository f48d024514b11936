"""Reads of labels."""

from __future__ import annotations

from django.db.models import Count, Q, QuerySet

from agentops.models import HandoffStatus, Session
from agentops.operators.models import Label


def labels_list() -> list[Label]:
    return list(Label.objects.annotate(conversations=Count("sessions")).order_by("name"))


def session_labels(*, session: Session) -> list[Label]:
    return list(session.labels.order_by("name"))


def labels_with_counts() -> QuerySet[Label]:
    """Every label with how many conversations carry it, and how many of those wait in the
    queue or are being worked (a handoff open or claimed)."""
    return Label.objects.select_related("created_by").annotate(
        conversations=Count("sessions", distinct=True),
        active=Count(
            "sessions",
            filter=Q(sessions__handoffs__status__in=(HandoffStatus.OPEN, HandoffStatus.CLAIMED)),
            distinct=True,
        ),
    )
