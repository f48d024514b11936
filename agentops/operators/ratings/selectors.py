"""Reads of ratings: one conversation's, and CSAT per operator, team and agent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Avg, Count, Q

from agentops.models import HandoffRating
from tracing.platform.types import SessionId


def handoff_rating_get(*, session_id: SessionId) -> HandoffRating | None:
    """The rating of the session's latest closed handoff, if the end user gave one."""
    return (
        HandoffRating.objects.filter(handoff__session_id=session_id)
        .order_by("-handoff__resolved_at")
        .first()
    )


def csat_figures(*, since: datetime) -> dict[str, list[dict[str, Any]]]:
    """CSAT of the handoffs created since `since`, per operator (who closed it), team and
    agent: ratings, the average score, and CSAT (the share of 4 and 5 scores)."""
    ratings = HandoffRating.objects.filter(handoff__created_at__gte=since)

    def per(key: str) -> list[dict[str, Any]]:
        rows = (
            ratings.values(key)
            .annotate(
                n=Count("id"), average=Avg("score"), happy=Count("id", filter=Q(score__gte=4))
            )
            .order_by(key)
        )
        return [
            {
                "name": row[key] or "(none)",
                "ratings": row["n"],
                "average": row["average"],
                "csat": row["happy"] / row["n"] if row["n"] else None,
            }
            for row in rows
        ]

    return {
        "operators": per("handoff__claimed_by__username"),
        "teams": per("handoff__team__slug"),
        "agents": per("handoff__session__agent__slug"),
    }
