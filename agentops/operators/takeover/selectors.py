"""The live view: conversations in progress, with the signals that may call for a human."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber

from agentops.models import (
    ACTIVE_RUN_STATUSES,
    Message,
    Role,
    Run,
    RunStatus,
    Session,
    SessionStatus,
)

LIVE_WINDOW = timedelta(hours=1)  # idle conversations drop off the live view after this
LIVE_LIMIT = 100
LIVE_RECENT_MESSAGES = 20  # each conversation's signals are read from its latest messages
LONG_WAIT_SECONDS = 60
TOOL_ERRORS_SIGNAL = 2


@dataclass
class LiveConversation:
    session: Session
    run: Run | None
    last: Message | None  # the latest message the end user would see (not a tool result)
    signals: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        if self.run is not None and self.run.status in ACTIVE_RUN_STATUSES:
            return self.run.status
        return "idle"


def _normalised(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _repeated(a: str, b: str) -> bool:
    """The same question again: equal once case and punctuation are set aside, or sharing
    at least 80 % of their words."""
    a, b = _normalised(a), _normalised(b)
    if not a or not b:
        return False
    if a == b:
        return True
    words_a, words_b = set(a.split()), set(b.split())
    return len(words_a & words_b) / len(words_a | words_b) >= 0.8


def live_signals(*, messages: list[Message], run: Run | None, now: datetime) -> list[str]:
    """Why an operator might want to step in, from the conversation's latest messages (oldest
    first) and run. Each signal is a rule anyone can check by reading the conversation."""
    signals = []
    tool_errors = sum(1 for m in messages if m.role == Role.TOOL and m.content.startswith("Error"))
    if tool_errors >= TOOL_ERRORS_SIGNAL:
        signals.append(f"{tool_errors} tool errors")
    asked = [m.content for m in messages if m.role == Role.USER]
    if len(asked) >= 2 and _repeated(asked[-1], asked[-2]):
        signals.append("user asked twice")
    spoken = [
        m for m in messages if m.role in (Role.USER, Role.ASSISTANT, Role.OPERATOR) and m.content
    ]
    last = spoken[-1] if spoken else None
    if last is not None and last.role == Role.USER and last.created_at:
        waited = (now - last.created_at).total_seconds()
        if waited >= LONG_WAIT_SECONDS:
            signals.append(f"user waiting {int(waited // 60)} min {int(waited % 60)} s")
    if run is not None and run.status == RunStatus.FAILED:
        signals.append(f"run failed: {run.error_class}")
    elif run is not None and run.status == RunStatus.WAITING and run.wait_reason:
        signals.append(f"waiting: {run.wait_reason}")
    return signals


def conversations_live(*, now: datetime, agent: str = "") -> list[LiveConversation]:
    """Conversations the agents are having now (not handed off, not closed): those with a run
    in flight or active within LIVE_WINDOW; those with signals first, then the most recent."""
    sessions_qs = (
        Session.objects.production()
        .filter(status=SessionStatus.ACTIVE)
        .filter(Q(updated_at__gte=now - LIVE_WINDOW) | Q(runs__status__in=ACTIVE_RUN_STATUSES))
        .select_related("agent")
        .distinct()
        .order_by("-updated_at")
    )
    if agent:
        sessions_qs = sessions_qs.filter(agent__slug=agent)
    sessions = list(sessions_qs[:LIVE_LIMIT])
    ids = [s.pk for s in sessions]
    runs = {
        r.session_id: r
        for r in Run.objects.filter(session_id__in=ids)
        .order_by("session_id", "-created_at")
        .distinct("session_id")
    }
    recent: dict[Any, list[Message]] = {pk: [] for pk in ids}
    rows = (
        Message.objects.filter(session_id__in=ids)
        .annotate(
            newest=Window(RowNumber(), partition_by=[F("session_id")], order_by=F("seq").desc())
        )
        .filter(newest__lte=LIVE_RECENT_MESSAGES)
        .defer("tool_calls")
        .order_by("session_id", "seq")
    )
    for message in rows:
        recent[message.session_id].append(message)
    out = []
    for session in sessions:
        messages = recent[session.pk]
        run = runs.get(session.pk)
        last = next((m for m in reversed(messages) if m.role != Role.TOOL and m.content), None)
        out.append(
            LiveConversation(
                session=session,
                run=run,
                last=last,
                signals=live_signals(messages=messages, run=run, now=now),
            )
        )
    out.sort(key=lambda c: len(c.signals) > 0, reverse=True)
    return out


def conversation_live(*, session: Session, now: datetime) -> LiveConversation:
    """One conversation as the live view shows it (the watch page's header)."""
    run = Run.objects.filter(session=session).order_by("-created_at").first()
    messages = list(Message.objects.filter(session=session).order_by("-seq")[:LIVE_RECENT_MESSAGES])
    messages.reverse()
    last = next((m for m in reversed(messages) if m.role != Role.TOOL and m.content), None)
    return LiveConversation(
        session=session,
        run=run,
        last=last,
        signals=live_signals(messages=messages, run=run, now=now),
    )
