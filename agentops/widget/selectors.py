"""Reads of the embeddable chat: keys, and an end user's own conversation (never another's)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from django.core.cache import cache
from redis.exceptions import RedisError

from agentops.conversation import message_serialise
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    Handoff,
    HandoffRating,
    HandoffResolution,
    HandoffStatus,
    Message,
    Role,
    Run,
    Session,
    SessionStatus,
)
from agentops.widget.models import WidgetKey
from agentops.widget.services import REFUSED_ORIGINS_DAYS, EndUser, refused_origins_name
from tracing.platform.logs import get_logger

log = get_logger(__name__)

HISTORY_MESSAGES = 200


def widget_keys_list() -> list[WidgetKey]:
    return list(WidgetKey.objects.select_related("agent", "created_by").order_by("-created_at"))


def widget_key_get(*, public_key: str) -> WidgetKey | None:
    return WidgetKey.objects.select_related("agent").filter(public_key=public_key).first()


@dataclass(frozen=True)
class RefusedOrigin:
    origin: str
    networks: int  # how many client networks reported it (unverified: any client can)
    seen: datetime


def widget_refused_origins(*, key_ids: list[int]) -> dict[int, list[RefusedOrigin]]:
    """Per key, the origins it refused recently (agentops.widget.services
    widget_origin_refused_record), reported by the most networks first, then last seen."""
    since = time.time() - REFUSED_ORIGINS_DAYS * 24 * 3600
    names = {refused_origins_name(key_id): key_id for key_id in key_ids}
    try:
        stored = cache.get_many(list(names))
    except RedisError as exc:  # the keys page still works; the hint is missing
        log.warning("widget.refused_origins_unread", error=str(exc))
        return {}
    found = {}
    for name, seen in stored.items():
        rows = [
            RefusedOrigin(origin, networks, datetime.fromtimestamp(at, tz=UTC))
            for origin, (networks, at) in seen.items()
            if at > since
        ]
        if rows:
            found[names[name]] = sorted(rows, key=lambda r: (-r.networks, -r.seen.timestamp()))
    return found


@dataclass(frozen=True)
class WidgetKeyRow:
    """A line of the keys page: the key, and the origins it refused recently."""

    key: WidgetKey
    refused_origins: list[RefusedOrigin]


def widget_key_rows() -> list[WidgetKeyRow]:
    """Every widget key, newest first, each with its recently refused origins."""
    keys = widget_keys_list()
    refused = widget_refused_origins(key_ids=[k.pk for k in keys])
    return [WidgetKeyRow(key=k, refused_origins=refused.get(k.pk, [])) for k in keys]


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    return f"{parts.scheme}://{parts.netloc.lower()}"


def enduser_session_current(*, agent_id: int, enduser: EndUser) -> Session | None:
    """The end user's latest conversation with this agent (closed ones too: shown as such)."""
    return (
        Session.objects.production()  # a fork of their conversation is a developer's
        .filter(agent_id=agent_id, external_user=enduser.external_user)
        .select_related("operator")
        .order_by("-created_at")
        .first()
    )


def enduser_session_get(*, agent_id: int, enduser: EndUser, session_id: object) -> Session | None:
    """A session only if it is this end user's, with this agent (`session_id` as the client
    sent it: anything but a UUID's text finds none)."""
    try:
        return (
            Session.objects.production()
            .filter(pk=str(session_id), agent_id=agent_id, external_user=enduser.external_user)
            .select_related("operator")
            .first()
        )
    except Exception:  # not a UUID
        return None


def visible_message(message: Message) -> dict[str, Any] | None:
    """What the end user may see of a message: their own, the agent's answers and the
    operators' replies; never tool calls, tool results or system text. A projection of the
    one conversation shape (agentops.conversation), as live `message` events are."""
    return message_visible_event(message_serialise(message))


def message_visible_event(event: dict[str, Any]) -> dict[str, Any] | None:
    role = event.get("role")
    content = event.get("content") or ""
    if role not in (Role.USER, Role.ASSISTANT, Role.OPERATOR) or not content:
        return None
    return {
        "kind": "message",
        "seq": event["seq"],
        "role": role,
        "content": content,
        "run_id": event.get("run_id"),
        "operator": event.get("author") if role == Role.OPERATOR else None,
        "agent": (event.get("agent") or {}).get("name") if role == Role.ASSISTANT else None,
    }


def session_state(*, session: Session) -> dict[str, Any]:
    run = Run.objects.filter(session=session).order_by("-created_at").only("status").first()
    handed_off = session.status == SessionStatus.HANDED_OFF
    return {
        "kind": "state",
        "session_id": str(session.pk),
        "status": session.status,
        "operator": session.operator.get_username()
        if handed_off and session.operator_id and session.operator
        else None,
        "running": bool(run and run.status in ACTIVE_RUN_STATUSES),
        "rating": session_rating_state(session=session),
    }


def session_rating_state(*, session: Session) -> dict[str, Any] | None:
    """What the end user may rate: None unless an operator closed the conversation; then the
    score they gave (None if they have not rated it yet)."""
    if session.status != SessionStatus.CLOSED:
        return None
    closed = (
        Handoff.objects.filter(
            session=session, status=HandoffStatus.RESOLVED, resolution=HandoffResolution.CLOSED
        )
        .order_by("-resolved_at")
        .first()
    )
    if closed is None:
        return None
    rating = HandoffRating.objects.filter(handoff=closed).only("score").first()
    return {"score": rating.score if rating else None}


def session_messages_after(*, session: Session, after: int) -> list[dict[str, Any]]:
    """The visible messages above seq `after` (the latest HISTORY_MESSAGES on a first load)."""
    messages = session.messages.filter(seq__gt=after).select_related("author")
    if after:  # a reconnect: everything since, so nothing is skipped
        rows = list(messages.order_by("seq"))
    else:
        rows = list(reversed(messages.order_by("-seq")[:HISTORY_MESSAGES]))
    events = (visible_message(m) for m in rows)
    return [e for e in events if e is not None]
