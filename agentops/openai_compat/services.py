"""Writes of the OpenAI-compatible endpoint: one chat completion request is one turn of a
session — the request's last user message is posted, and a run starts as through the API."""

from __future__ import annotations

import uuid

from django.db import transaction

from agentops.models import Agent, Run, Session, SessionStatus
from agentops.runtime import services as runtime
from tracing.platform.types import RequestUser


class SessionNotFound(Exception):
    """The session the request names does not exist for this model."""


@transaction.atomic
def chat_session_resolve(
    *, agent: Agent, user: RequestUser, session_id: str, end_user: str
) -> tuple[Session, bool]:
    """The session a request continues: the one `X-Session-Id` names, else the end user's
    (`user` field) latest open session with this agent, else a new one."""
    if session_id:
        try:
            pk = uuid.UUID(session_id)
        except ValueError as exc:
            raise SessionNotFound(f"X-Session-Id: {session_id[:60]!r} is not a session id") from exc
        session = Session.objects.production().filter(pk=pk, agent=agent).first()
        if session is None:
            raise SessionNotFound(f"X-Session-Id: no session {pk} with this model")
        return session, False
    if end_user:
        session = (
            Session.objects.production()
            .filter(agent=agent, external_user=end_user)
            .exclude(status=SessionStatus.CLOSED)
            .order_by("-updated_at")
            .first()
        )
        if session is not None:
            return session, False
    session = runtime.session_create(agent=agent, external_user=end_user, created_by=user)
    return session, True


def chat_message_post(
    *, session: Session, user: RequestUser, content: str, api_key_id: int | None = None
) -> Run | None:
    """Post the request's user message and start a run, as `POST /api/sessions/{id}/messages`
    does (RuntimeConflict when a run of the session is still active or the session is
    closed; ValueError for bad content; BudgetExceeded at a budget of the agent, the end user
    or the key `api_key_id`). None: a person has the conversation."""
    return runtime.session_post_message(
        session=session, content=content, author=user, api_key_id=api_key_id
    )
