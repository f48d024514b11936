"""The JSON API (`/api/`, OpenAPI schema at `/api/openapi.json`).

Auth: `Authorization: Bearer <personal API key>` or the browser session (with CSRF).
Reads need the viewer role; writes need operator. Errors are JSON: {"error", "field"?}.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404
from ninja import NinjaAPI, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import APIKeyCookie, HttpBearer
from pydantic import Field

from agentops.auth import api_key_user, has_role
from agentops.models import Agent, Handoff, HandoffStatus, Run, Session, ToolCall
from agentops.runtime import services
from agentops.runtime.checkpoint import message_event
from tracing.emit import span_to_event
from tracing.models import Span


class BearerKey(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = api_key_user(token)
        if user is not None:
            request.user = user
        return user


class SessionCookie(APIKeyCookie):
    """The browser's login session; unsafe methods need the CSRF token (csrf=True)."""

    param_name = "sessionid"

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        return user if user is not None and user.is_authenticated else None


api = NinjaAPI(
    title="AgentOps API",
    version="1.0",
    urls_namespace="api",
    auth=[BearerKey(), SessionCookie(csrf=True)],
    docs_url="/docs",
    openapi_url="/openapi.json",
)


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> Any:
    first = exc.errors[0] if exc.errors else {}
    location = [
        str(part)
        for part in first.get("loc", [])
        if part not in ("body", "payload", "query", "path")
    ]
    field = ".".join(location) or None
    message = first.get("msg", "invalid input")
    return api.create_response(
        request,
        {
            "error": f"{field}: {message}" if field else message,
            "field": field,
            "detail": exc.errors,
        },
        status=422,
    )


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> Any:
    return api.create_response(
        request,
        {"error": "authentication required: send 'Authorization: Bearer <api key>'"},
        status=401,
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> Any:
    return api.create_response(request, {"error": str(exc)}, status=exc.status_code)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> Any:
    return api.create_response(request, {"error": "not found"}, status=404)


@api.exception_handler(services.RuntimeConflict)
def on_conflict(request: HttpRequest, exc: services.RuntimeConflict) -> Any:
    return api.create_response(request, {"error": str(exc)}, status=409)


def require(request: HttpRequest, role: str) -> None:
    if not has_role(request.user, role):
        raise HttpError(403, f"this needs the {role} role")


# -- schemas ------------------------------------------------------------------------------
class SessionIn(Schema):
    agent: str = Field(min_length=1, max_length=64, description="The agent's slug")
    user: str = Field(
        default="", max_length=200, description="Your end user's id (scopes memories)"
    )
    title: str = Field(default="", max_length=200)


class SessionOut(Schema):
    id: uuid.UUID
    agent: str
    user: str
    status: str
    created_at: datetime


class MessageIn(Schema):
    content: str = Field(min_length=1, max_length=services.MAX_MESSAGE_CHARS)


class RunRef(Schema):
    run: uuid.UUID | None


class DecisionIn(Schema):
    approve: bool
    note: str = Field(default="", max_length=2000)


def session_out(session: Session) -> dict[str, Any]:
    return {
        "id": session.pk,
        "agent": session.agent.slug,
        "user": session.external_user,
        "status": session.status,
        "created_at": session.created_at,
    }


def run_out(run: Run, *, with_traceback: bool = True) -> dict[str, Any]:
    """`with_traceback` False (viewers) leaves the error's traceback out: it is for operators."""
    return {
        "id": str(run.pk),
        "session": str(run.session_id),
        "agent": run.agent.slug,
        "status": run.status,
        "steps": run.step,
        "model_calls": run.model_calls,
        "retries": run.retries,
        "fallbacks": run.fallbacks,
        "jobs_started": run.jobs_started,
        "wait_reason": run.wait_reason,
        "wake_at": run.wake_at.isoformat() if run.wake_at else None,
        "tokens_in": run.tokens_in,
        "tokens_out": run.tokens_out,
        "model": run.model_used,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "error": {
            "class": run.error_class,
            "message": run.error_message,
            "traceback": run.error_traceback if with_traceback else None,
        }
        if run.error_class
        else None,
    }


# -- endpoints ----------------------------------------------------------------------------
@api.post("/sessions", response={201: SessionOut}, summary="Start a session with an agent")
def create_session(request: HttpRequest, payload: SessionIn) -> Status[dict[str, Any]]:
    require(request, "operator")
    agent = Agent.objects.filter(slug=payload.agent).first()
    if agent is None:
        raise HttpError(404, f"agent: no agent with slug {payload.agent!r}")
    session = services.session_create(
        agent=agent, external_user=payload.user, created_by=request.user, title=payload.title
    )
    return Status(201, session_out(session))


@api.get("/sessions/{session_id}", response=SessionOut)
def get_session(request: HttpRequest, session_id: uuid.UUID) -> dict[str, Any]:
    require(request, "viewer")
    return session_out(get_object_or_404(Session.objects.select_related("agent"), pk=session_id))


@api.post(
    "/sessions/{session_id}/messages",
    response={202: RunRef},
    summary="Send a user message; starts a run",
)
def post_message(
    request: HttpRequest, session_id: uuid.UUID, payload: MessageIn
) -> Status[dict[str, Any]]:
    require(request, "operator")
    session = get_object_or_404(Session, pk=session_id)
    try:
        run = services.session_post_message(
            session=session, content=payload.content, author=request.user
        )
    except ValueError as exc:
        raise HttpError(422, f"content: {exc}") from exc
    return Status(202, {"run": run.pk if run else None})


@api.get("/sessions/{session_id}/messages", summary="The conversation, oldest first")
def list_messages(
    request: HttpRequest, session_id: uuid.UUID, after: int = 0, limit: int = 200
) -> dict[str, Any]:
    require(request, "viewer")
    session = get_object_or_404(Session, pk=session_id)
    limit = max(1, min(limit, 1000))
    rows = session.messages.select_related("author").filter(seq__gt=after).order_by("seq")[:limit]
    return {
        "session": str(session.pk),
        "status": session.status,
        "messages": [message_event(m) for m in rows],
    }


@api.get("/runs/{run_id}", summary="A run: status, steps, error")
def get_run(request: HttpRequest, run_id: uuid.UUID) -> dict[str, Any]:
    require(request, "viewer")
    run = get_object_or_404(Run.objects.select_related("agent"), pk=run_id)
    return run_out(run, with_traceback=has_role(request.user, "operator"))


@api.get("/runs/{run_id}/trace", summary="The run's spans and events in emission order")
def get_trace(request: HttpRequest, run_id: uuid.UUID) -> dict[str, Any]:
    require(request, "viewer")
    run = get_object_or_404(Run, pk=run_id)
    spans = Span.objects.filter(trace_id=run.pk).order_by("seq")
    return {"trace_id": str(run.pk), "spans": [span_to_event(s) for s in spans]}


@api.post("/runs/{run_id}/cancel")
def cancel_run(request: HttpRequest, run_id: uuid.UUID) -> dict[str, Any]:
    require(request, "operator")
    run = services.run_cancel(run=get_object_or_404(Run, pk=run_id), actor=request.user)
    return run_out(run)


@api.post(
    "/runs/{run_id}/retry",
    response={202: dict},
    summary="Resume a failed run from its last checkpoint",
)
def retry_run(request: HttpRequest, run_id: uuid.UUID) -> Status[dict[str, Any]]:
    require(request, "operator")
    run = services.run_retry(run=get_object_or_404(Run, pk=run_id), actor=request.user)
    return Status(202, run_out(run))


@api.get("/handoffs", summary="Handoffs, open ones first by priority then age")
def list_handoffs(request: HttpRequest, status: str = "open") -> dict[str, Any]:
    require(request, "viewer")
    if status not in HandoffStatus.values and status != "all":
        raise HttpError(422, f"status: must be one of {', '.join(HandoffStatus.values)} or all")
    rows = Handoff.objects.select_related("session__agent", "claimed_by").order_by(
        "priority", "created_at"
    )
    if status != "all":
        rows = rows.filter(status=status)
    return {
        "handoffs": [
            {
                "id": h.pk,
                "session": str(h.session_id),
                "run": str(h.run_id) if h.run_id else None,
                "agent": h.session.agent.slug,
                "reason": h.reason,
                "team": h.team,
                "priority": h.priority,
                "status": h.status,
                "claimed_by": h.claimed_by.get_username() if h.claimed_by else None,
                "created_at": h.created_at.isoformat(),
                "summary": h.summary,
            }
            for h in rows[:500]
        ]
    }


@api.post(
    "/tool-calls/{tool_call_id}/decision",
    summary="Approve or reject a tool call waiting for approval",
)
def decide_tool_call(
    request: HttpRequest, tool_call_id: int, payload: DecisionIn
) -> dict[str, Any]:
    require(request, "operator")
    call = services.toolcall_decide(
        tool_call=get_object_or_404(ToolCall, pk=tool_call_id),
        approve=payload.approve,
        actor=request.user,
        note=payload.note,
    )
    return {"id": call.pk, "status": call.status}
