"""Reads of the console: agents and sessions to pick from (the conversation itself is
`agentops.selectors.conversation_get`)."""

from __future__ import annotations

from django.db.models import CharField, Q
from django.db.models.functions import Cast

from agentops.models import Agent, AgentQuerySet, Session
from tracing.platform.types import SessionId


def agents_list() -> AgentQuerySet:
    return Agent.objects.select_related("endpoint").order_by("name")


def sessions_search(*, query: str = "", agent: str = "", limit: int = 50) -> list[Session]:
    """Recent real conversations (sandbox ones are on their own pages), optionally matching
    an external user, title or id fragment."""
    qs = Session.objects.production().select_related("agent").order_by("-updated_at")
    if agent:
        qs = qs.filter(agent__slug=agent)
    query = query.strip()
    if query:
        qs = qs.annotate(id_text=Cast("id", CharField())).filter(
            Q(external_user__icontains=query)
            | Q(title__icontains=query)
            | Q(id_text__icontains=query.lower())
        )
    return list(qs[:limit])


def session_get(*, session_id: SessionId) -> Session | None:
    return Session.objects.select_related("agent", "operator").filter(pk=session_id).first()
