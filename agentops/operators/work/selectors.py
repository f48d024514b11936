"""Reads for working a conversation: its thread with the private notes, the end user's other
conversations and memories, who it can go to, what the operator has not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Max

from agentops.auth import has_role, role_holders
from agentops.models import Session
from agentops.operators.access import user_pk
from agentops.operators.models import PrivateNote
from memory.models import Memory
from tracing.platform.types import RequestUser


def user_memories(*, session: Session, limit: int = 100) -> list[Memory]:
    """The end user's long-term memories with this agent (read-only for operators)."""
    if not session.external_user:
        return []
    return list(
        Memory.objects.filter(agent_id=session.agent_id, user_key=session.memory_scope)
        .defer("embedding")
        .order_by("-pinned", "-importance", "-created_at")[:limit]
    )


def user_conversations(*, session: Session, limit: int = 20) -> list[Session]:
    """The end user's other conversations (with any agent), newest first, each with its
    message count and how many times it was handed off."""
    if not session.external_user:
        return []
    return list(
        Session.objects.production()
        .filter(external_user=session.external_user)
        .exclude(pk=session.pk)
        .select_related("agent")
        .annotate(
            message_count=Count("messages", distinct=True),
            handoff_count=Count("handoffs", distinct=True),
            last_at=Max("messages__created_at"),
        )
        .order_by("-created_at")[:limit]
    )


@dataclass
class NoteItem:
    """A private note placed in the operator's view of the thread, by time."""

    note: PrivateNote

    @property
    def created_at(self) -> datetime:
        return self.note.created_at


def session_notes(*, session: Session, after: int = 0) -> list[PrivateNote]:
    """The session's private notes, oldest first; with `after`, those above that note id."""
    return list(
        PrivateNote.objects.filter(session=session, pk__gt=after)
        .select_related("author")
        .order_by("created_at", "id")
    )


def thread_with_notes(*, items: list[Any], notes: list[PrivateNote]) -> list[Any]:
    """The conversation's items with the notes among them where they were written (a note
    after the messages stored before it)."""
    thread: list[Any] = []
    pending = list(notes)
    for item in items:
        while pending and pending[0].created_at < item.message.created_at:
            thread.append(NoteItem(note=pending.pop(0)))
        thread.append(item)
    thread += [NoteItem(note=n) for n in pending]
    return thread


def operators_list() -> list[Any]:
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.filter(is_active=True).filter(role_holders("operator"))
    return list(users.distinct().order_by("username"))


def _queue_of(user: RequestUser) -> tuple[str, list[int]]:
    """SQL condition (on `h`, the handoff) for an open handoff being in `user`'s queue: for
    admins and operators in no team, every open handoff; otherwise those of their teams and
    those sent to no team."""
    if has_role(user, "admin"):
        return "TRUE", []
    return (
        """(h.team_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM agentops_team_members m WHERE m.user_id = %s)
            OR h.team_id IN (SELECT m.team_id FROM agentops_team_members m WHERE m.user_id = %s))""",
        [user_pk(user), user_pk(user)],
    )


def unread_counts(*, user: RequestUser) -> dict[str, int]:
    """What the operator has not seen, in one query: handoffs in their queue (or claimed by
    them) they have not opened, and end-user messages in their claimed conversations written
    after their read marker (or, never opened, after the handoff)."""
    if not has_role(user, "operator"):
        return {"handoffs": 0, "messages": 0, "total": 0}
    in_queue, params = _queue_of(user)
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT
              (SELECT count(*) FROM agentops_handoff h
                WHERE ((h.status = 'open' AND {in_queue})
                       OR (h.status = 'claimed' AND h.claimed_by_id = %s))
                  AND NOT EXISTS (SELECT 1 FROM agentops_handoffread r
                                   WHERE r.handoff_id = h.id AND r.user_id = %s)),
              (SELECT count(*) FROM agentops_handoff h
                 JOIN agentops_message msg ON msg.session_id = h.session_id
                 LEFT JOIN agentops_handoffread r ON r.handoff_id = h.id AND r.user_id = %s
                WHERE h.status = 'claimed' AND h.claimed_by_id = %s AND msg.role = 'user'
                  AND CASE WHEN r.id IS NULL THEN msg.created_at > h.created_at
                           ELSE msg.seq > r.last_seq END)
            """,  # noqa: S608 - a fixed fragment, values are parameters
            [*params, *[user_pk(user)] * 4],
        )
        handoffs, messages = cursor.fetchone()
    return {"handoffs": handoffs, "messages": messages, "total": handoffs + messages}
