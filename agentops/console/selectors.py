"""Reads of the console: sessions to pick from and a conversation laid out for display."""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, Q, QuerySet
from django.db.models.functions import Cast

from agentops.models import Agent, Message, Role, Run, Session, ToolCall


def agents_list() -> QuerySet[Agent]:
    return Agent.objects.select_related("endpoint").order_by("name")


def sessions_search(*, query: str = "", agent: str = "", limit: int = 50) -> list[Session]:
    """Recent sessions, optionally matching an external user, title or id fragment."""
    qs = Session.objects.select_related("agent").order_by("-updated_at")
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


def session_get(*, session_id: Any) -> Session | None:
    return Session.objects.select_related("agent", "operator").filter(pk=session_id).first()


def session_latest_run(*, session: Session) -> Run | None:
    return (
        Run.objects.select_related("agent").filter(session=session).order_by("-created_at").first()
    )


def _duration_ms(call: ToolCall | None) -> int | None:
    if call is None or call.finished_at is None:
        return None
    return int((call.finished_at - call.started_at).total_seconds() * 1000)


def conversation_items(*, session: Session, limit: int = 300) -> list[dict[str, Any]]:
    """Messages in order; each tool call of an assistant message carries its result (the
    later `tool` message), status and duration, so the page shows them together."""
    messages = list(reversed(session.messages.select_related("author").order_by("-seq")[:limit]))
    calls = {c.call_id: c for c in ToolCall.objects.filter(run__session=session)}
    results: dict[str, Message] = {
        m.tool_call_id: m for m in messages if m.role == Role.TOOL and m.tool_call_id
    }
    items: list[dict[str, Any]] = []
    for m in messages:
        if m.role == Role.TOOL and m.tool_call_id:
            continue  # shown with its call
        tool_calls = []
        for tc in m.tool_calls or []:
            call_id = tc.get("id", "")
            function = tc.get("function") or {}
            row = calls.get(call_id)
            result = results.get(call_id)
            if row is not None:
                status = row.status
            elif result is not None:
                status = "failed" if result.content.startswith("Error") else "succeeded"
            else:
                status = "started"
            tool_calls.append(
                {
                    "call_id": call_id,
                    "name": function.get("name", "?"),
                    "arguments": function.get("arguments", ""),
                    "status": status,
                    "duration_ms": _duration_ms(row),
                    "result": result.content if result is not None else None,
                    "result_seq": result.seq if result is not None else None,
                }
            )
        items.append({"message": m, "tool_calls": tool_calls})
    return items


def tool_call_states(*, session: Session) -> dict[str, dict[str, Any]]:
    return {
        c.call_id: {"status": c.status, "duration_ms": _duration_ms(c), "tool": c.tool_name}
        for c in ToolCall.objects.filter(run__session=session)
    }
