"""Reads of feedback: what was said about a run and its messages."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from agentops.models import Feedback, Run
from tracing.platform.types import Actor, RunId


def feedback_for_run(*, run: Run) -> QuerySet[Feedback]:
    """Feedback on the run and on its messages, newest first."""
    return (
        Feedback.objects.filter(Q(run=run) | Q(message__run=run))
        .select_related("author", "message")
        .order_by("-updated_at")
    )


def feedback_list(
    *, run_id: RunId | None = None, message_id: int | None = None, agent: str = "", limit: int = 100
) -> list[Feedback]:
    qs = Feedback.objects.select_related("author", "message", "run__agent_version").order_by(
        "-updated_at", "-pk"
    )
    if run_id is not None:
        qs = qs.filter(Q(run_id=run_id) | Q(message__run_id=run_id))
    if message_id is not None:
        qs = qs.filter(message_id=message_id)
    if agent:
        qs = qs.filter(run__agent__slug=agent)
    return list(qs[:limit])


def feedback_mine(*, run: Run, author: Actor) -> dict[int | None, Feedback]:
    """The author's own feedback on the run (key None) and its messages (key: message id)."""
    if author is None or not author.is_authenticated:
        return {}
    return {f.message_id: f for f in feedback_for_run(run=run).filter(author=author)}
