"""The JSON API (`/api/`, OpenAPI schema at `/api/openapi.json`).

Auth: `Authorization: Bearer <personal API key>` or the browser session (with CSRF).
Reads need the viewer role; writes need operator. Errors are JSON: {"error", "field"?}.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import get_object_or_404
from ninja import NinjaAPI, Path, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import APIKeyCookie, HttpBearer
from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from agentops.auth import api_key_holder, bearer_token, has_role, role_require
from agentops.conversation import conversation_serialise, handoff_detail_serialise
from agentops.idempotency import idempotent
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    Agent,
    Handoff,
    HandoffStatus,
    Role,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    ToolCall,
    ToolCallStatus,
)
from agentops.runtime import services
from agentops.selectors import conversation_get
from tracing.emit import span_to_event
from tracing.models import Span, SpanStatus
from tracing.platform.errors import ApplicationError
from tracing.platform.json_input import JsonInputError, json_parse


class InvalidApiKey(AuthenticationError):
    pass


class BearerKey(HttpBearer):
    def __call__(self, request: HttpRequest) -> Any:
        # django-ninja's own parsing logs a header of another scheme (Basic …) whole in DEBUG.
        token = bearer_token(request.headers.get(self.header))
        if token is None:
            return None
        return self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        holder = api_key_holder(token)
        if holder is None:
            # A Bearer header was sent: its verdict is final, no falling through to the
            # session cookie (whose CSRF check would answer 403 instead).
            raise InvalidApiKey()
        request.user = holder.user
        request.api_key_id = holder.key_id  # type: ignore[attr-defined]  # its budgets
        return holder.user


class SessionCookie(APIKeyCookie):
    """The browser's login session; unsafe methods need the CSRF token (csrf=True)."""

    param_name = "sessionid"

    def _get_key(self, request: HttpRequest) -> str | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None  # no login session: nothing to check a CSRF token for
        return super()._get_key(request)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        return user if user is not None and user.is_authenticated else None


class JsonBodyParser(Parser):
    """Bodies are read by the one parser of JSON from outside: a lone surrogate or nesting
    too deep is refused naming the field (422, see on_http_error), where json.loads would let
    them through to Postgres or into RecursionError. A NUL is left to the fields (`Text`
    refuses it, 422 naming the field): in a property the schema does not name it is ignored,
    and refusing it would refuse a request the schema allows."""

    def parse_body(self, request: HttpRequest) -> Any:
        return json_parse(request.body, nul_ok=True)


api = NinjaAPI(
    title="AgentOps API",
    parser=JsonBodyParser(),
    version="1.0",
    urls_namespace="api",
    auth=[BearerKey(), SessionCookie(csrf=True)],
    docs_url="/docs",
    openapi_url="/openapi.json",
)
api.add_decorator(idempotent, mode="view")  # `Idempotency-Key` on every POST


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
    message = (
        "invalid API key"
        if isinstance(exc, InvalidApiKey)
        else "authentication required: send 'Authorization: Bearer <api key>'"
    )
    response = api.create_response(request, {"error": message}, status=401)
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(RequestDataTooBig)
def on_body_too_large(request: HttpRequest, exc: RequestDataTooBig) -> Any:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return api.create_response(
        request, {"error": f"request body too large: at most {limit} bytes"}, status=413
    )


@api.exception_handler(MultiPartParserError)
def on_malformed_multipart(request: HttpRequest, exc: MultiPartParserError) -> Any:
    """A multipart body Django cannot read (no boundary, cut short): the client's fault."""
    return api.create_response(
        request, {"error": f"malformed multipart body: {exc}", "field": "file"}, status=400
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> Any:
    if isinstance(exc.__cause__, JsonInputError):  # django-ninja wraps the parser's error
        refused = exc.__cause__
        return api.create_response(
            request, {"error": str(refused), "field": refused.field}, status=422
        )
    return api.create_response(request, {"error": str(exc)}, status=exc.status_code)


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> Any:
    return api.create_response(request, {"error": "not found"}, status=404)


@api.exception_handler(ApplicationError)
def on_application_error(request: HttpRequest, exc: ApplicationError) -> Any:
    """Every service refusal, for every router of this API: its status, its field named."""
    response = api.create_response(request, exc.body(), status=exc.status)
    for name, value in exc.headers().items():  # a 429's Retry-After
        response[name] = value
    return response


@api.exception_handler(DjangoValidationError)
def on_model_validation_error(request: HttpRequest, exc: DjangoValidationError) -> Any:
    """A model's own validation (`full_clean`) refused values: 422 naming the first field,
    every field's messages in `detail`."""
    if not hasattr(exc, "error_dict"):
        message = " ".join(exc.messages) or "invalid"
        return api.create_response(request, {"error": message, "field": None}, status=422)
    errors = exc.message_dict
    field = next(iter(errors))
    body = {
        "error": f"{field}: {' '.join(errors[field])}",
        "field": field,
        "detail": [{"loc": [key], "msg": " ".join(messages)} for key, messages in errors.items()],
    }
    return api.create_response(request, body, status=422)


# -- schemas ------------------------------------------------------------------------------
def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "must not contain NUL characters")
    return value


# Postgres text cannot hold NUL: refuse it here (422 naming the field), and say so in the schema.
Text = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": "^[^\\x00]*$"})]
MAX_INT = 2**31 - 1  # the largest sequence number the database's integer columns hold


class ErrorOut(Schema):
    error: str
    field: str | None = None
    detail: list[dict[str, Any]] | None = None


# Error statuses, declared per operation by combining these (every operation has auth).
AUTH_ERRORS: dict[int, type[Schema]] = {401: ErrorOut, 403: ErrorOut, 422: ErrorOut}
FOUND_ERRORS = {**AUTH_ERRORS, 404: ErrorOut}
BODY_ERRORS = {400: ErrorOut, 413: ErrorOut}


class SessionIn(Schema):
    agent: Text = Field(min_length=1, max_length=64, description="The agent's slug")
    user: Text = Field(
        default="", max_length=200, description="Your end user's id (scopes memories)"
    )
    title: Text = Field(default="", max_length=200)


class SessionOut(Schema):
    id: uuid.UUID
    agent: str
    user: str
    status: SessionStatus
    created_at: datetime
    forked_from: uuid.UUID | None = Field(
        default=None, description="The session this one was forked from (see its first run)"
    )


class MessageIn(Schema):
    content: Text = Field(min_length=1, max_length=services.MAX_MESSAGE_CHARS)


class RunRef(Schema):
    run: uuid.UUID | None


class DecisionIn(Schema):
    approve: bool = Field(strict=True)  # `0` or "no" is not a decision
    note: Text = Field(default="", max_length=2000)


class DecisionOut(Schema):
    id: int
    status: ToolCallStatus


class ForkIn(Schema):
    step: int = Field(
        ge=0,
        le=MAX_INT,
        description="Fork at the end of this step of the run (0: its start, at its user message)",
    )
    content: Text | None = Field(
        default=None,
        max_length=services.MAX_MESSAGE_CHARS,
        description="New text for the message of that step (the user message at step 0, the "
        "model's reply or the tool result at a later step); the fork goes on from it",
    )
    allow_side_effects: bool = Field(
        default=False,
        strict=True,
        description="Let non-idempotent tools run after the fork point; otherwise they are "
        "answered from the origin run's recording of the same call, or refused",
    )
    agent_version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_INT,
        description="Run this version (its number) of the agent; default: the run's version",
    )
    model: Text | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Run another model: a version derived from the above with this model",
    )


class ForkOrigin(Schema):
    session: uuid.UUID | None
    run: uuid.UUID | None
    step: int | None


class ForkOut(Schema):
    session: uuid.UUID
    run: uuid.UUID
    agent_version: int | None = Field(description="The number of the version the fork runs")
    forked_from: ForkOrigin


class RunError(Schema):
    class_: str = Field(alias="class")
    message: str
    traceback: str | None = None


class ToolCallOut(Schema):
    id: int
    run: uuid.UUID
    session: uuid.UUID
    agent: str
    step: int
    call_id: str
    tool: str
    arguments: Any
    status: ToolCallStatus
    started_at: str
    decided_by: str | None
    decided_at: str | None


class RunOut(Schema):
    id: uuid.UUID
    session: uuid.UUID
    agent: str
    status: RunStatus
    steps: int
    model_calls: int
    retries: int
    fallbacks: int
    jobs_started: int
    wait_reason: str
    wake_at: str | None
    tokens_in: int
    tokens_out: int
    model: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    version: int | None = Field(default=None, description="The agent version it ran")
    error: RunError | None
    forked_from: ForkOrigin | None = Field(
        default=None, description="The run and step this run continues, if it began a fork"
    )
    forks: list[uuid.UUID] | None = Field(
        default=None, description="The first runs of the forks made from this run (GET only)"
    )
    pending_approvals: list[ToolCallOut] | None = Field(
        default=None, description="Tool calls waiting for an operator's decision (GET only)"
    )


class MessageAgentOut(Schema):
    slug: str
    name: str


class MessageOut(Schema):
    id: int
    seq: int
    role: Role
    content: str
    tool_calls: list[Any]
    tool_call_id: str
    name: str
    run_id: uuid.UUID | None
    agent: MessageAgentOut | None = Field(
        default=None, description="The agent that wrote an assistant message"
    )
    author: str | None = Field(description="Who wrote it: the end user, or the operator")
    client: str | None = Field(
        default=None, description="The account that sent it (the API key's owner)"
    )
    created_at: str | None


class ToolCallStateOut(Schema):
    status: ToolCallStatus
    duration_ms: int | None
    tool: str


class RunStatusOut(Schema):
    kind: str
    run_id: uuid.UUID
    session_id: uuid.UUID
    agent: str
    status: RunStatus
    error_class: str
    error_message: str
    wait_reason: str
    step: int


class HandoffStateOut(Schema):
    id: int
    status: HandoffStatus
    reason: str
    team: str
    priority: int
    claimed_by: str | None
    created_at: str


class MessagesOut(Schema):
    """The conversation (agentops/conversation.py), as the `/ws/sessions/<id>/` snapshot has it."""

    session: uuid.UUID
    status: SessionStatus
    messages: list[MessageOut]
    tool_calls: dict[str, ToolCallStateOut] = Field(
        description="The recorded tool calls of these messages, by the model's call id"
    )
    run: RunStatusOut | None = Field(description="The session's latest run")
    running: bool
    handoff: HandoffStateOut | None = Field(description="The open or claimed handoff")


class SpanOut(Schema):
    seq: int
    span_id: str
    parent_span_id: str
    name: str
    is_event: bool
    status: SpanStatus
    error_class: str
    error_message: str
    start_time: str
    duration_ms: float
    attributes: dict[str, Any]


class TraceOut(Schema):
    trace_id: uuid.UUID
    spans: list[SpanOut]


class HandoffFilter(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    ALL = "all"


class HandoffOut(Schema):
    id: int
    session: uuid.UUID
    run: uuid.UUID | None
    agent: str
    reason: str
    team: str
    priority: int
    status: HandoffStatus
    claimed_by: str | None
    created_at: str
    claimed_at: str | None = None
    resolved_at: str | None = None
    resolution: str = ""
    summary: str = Field(description="The context package: empty while it is being written")
    last_tool_calls: list[dict[str, Any]] = []
    suggested_reply: str = ""
    snoozed_at: str | None = Field(default=None, description="Snoozed since (out of the queue)")
    snoozed_until: str | None = Field(
        default=None, description="Back in the queue then; null while snoozed: when the user writes"
    )
    labels: list[str] = Field(default=[], description="The conversation's labels")


class HandoffsOut(Schema):
    handoffs: list[HandoffOut]


def session_out(session: Session) -> dict[str, Any]:
    return {
        "id": session.pk,
        "agent": session.agent.slug,
        "user": session.external_user,
        "status": session.status,
        "created_at": session.created_at,
        "forked_from": session.forked_from_id,
    }


def toolcall_out(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.pk,
        "run": call.run_id,
        "session": call.run.session_id,
        "agent": call.run.agent.slug,
        "step": call.step,
        "call_id": call.call_id,
        "tool": call.tool_name,
        "arguments": call.arguments,
        "status": call.status,
        "started_at": call.started_at.isoformat(),
        "decided_by": call.decided_by.get_username() if call.decided_by else None,
        "decided_at": call.decided_at.isoformat() if call.decided_at else None,
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
        "version": run.agent_version.number if run.agent_version_id and run.agent_version else None,
        "error": {
            "class": run.error_class,
            "message": run.error_message,
            "traceback": run.error_traceback if with_traceback else None,
        }
        if run.error_class
        else None,
        "forked_from": fork_origin(run),
    }


def fork_origin(run: Run) -> dict[str, Any] | None:
    if run.forked_at_step is None:
        return None
    return {
        "session": run.session.forked_from_id,
        "run": run.forked_from_id,
        "step": run.forked_at_step,
    }


# -- endpoints ----------------------------------------------------------------------------
@api.post(
    "/sessions",
    response={201: SessionOut, 404: ErrorOut, 409: ErrorOut, **AUTH_ERRORS, **BODY_ERRORS},
    summary="Start a session with an agent (409: it has no published version)",
)
def create_session(request: HttpRequest, payload: SessionIn) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    agent = Agent.objects.filter(slug=payload.agent).first()
    if agent is None:
        raise HttpError(404, f"agent: no agent with slug {payload.agent!r}")
    session = services.session_create(
        agent=agent, external_user=payload.user, created_by=request.user, title=payload.title
    )
    return Status(201, session_out(session))


@api.get("/sessions/{session_id}", response={200: SessionOut, **FOUND_ERRORS})
def get_session(request: HttpRequest, session_id: uuid.UUID) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    return session_out(get_object_or_404(Session.objects.select_related("agent"), pk=session_id))


@api.post(
    "/sessions/{session_id}/messages",
    response={202: RunRef, 409: ErrorOut, 429: ErrorOut, **FOUND_ERRORS, **BODY_ERRORS},
    summary="Send a user message; starts a run (429 with Retry-After: a budget is spent)",
)
def post_message(
    request: HttpRequest, session_id: uuid.UUID, payload: MessageIn
) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    # The service reads the session under its lock (404 when there is none): not twice.
    run = services.session_post_message(
        session=Session(pk=session_id),
        content=payload.content,
        author=request.user,
        api_key_id=getattr(request, "api_key_id", None),  # the key's budgets count it
    )
    return Status(202, {"run": run.pk if run else None})


@api.get(
    "/sessions/{session_id}/messages",
    response={200: MessagesOut, **FOUND_ERRORS},
    summary="The conversation, oldest first",
)
def list_messages(
    request: HttpRequest,
    session_id: uuid.UUID,
    after: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    session = get_object_or_404(Session, pk=session_id)
    return conversation_serialise(
        conversation_get(session=session, after=after, limit=limit, newest=False)
    )


@api.get(
    "/runs/{run_id}",
    response={200: RunOut, **FOUND_ERRORS},
    by_alias=True,
    summary="A run: status, steps, error",
)
def get_run(request: HttpRequest, run_id: uuid.UUID) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    run = get_object_or_404(Run.objects.select_related("agent", "session"), pk=run_id)
    pending = ToolCall.objects.filter(
        run=run, status=ToolCallStatus.AWAITING_APPROVAL, run__status__in=ACTIVE_RUN_STATUSES
    )
    return {
        **run_out(run, with_traceback=has_role(request.user, "operator")),
        "forks": list(run.forks.order_by("created_at").values_list("pk", flat=True)),
        "pending_approvals": [
            toolcall_out(c) for c in pending.select_related("run__agent", "decided_by")
        ],
    }


@api.get(
    "/runs/{run_id}/trace",
    response={200: TraceOut, **FOUND_ERRORS},
    summary="The run's spans and events in emission order",
)
def get_trace(request: HttpRequest, run_id: uuid.UUID) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    run = get_object_or_404(Run, pk=run_id)
    spans = Span.objects.filter(trace_id=run.pk).order_by("seq")
    return {"trace_id": str(run.pk), "spans": [span_to_event(s, content=True) for s in spans]}


@api.post(
    "/runs/{run_id}/cancel",
    response={200: RunOut, 409: ErrorOut, **FOUND_ERRORS, **BODY_ERRORS},
    by_alias=True,
    summary="Cancel a run",
)
def cancel_run(request: HttpRequest, run_id: uuid.UUID) -> dict[str, Any]:
    role_require(user=request.user, role="operator")
    run = services.run_cancel(run=get_object_or_404(Run, pk=run_id), actor=request.user)
    return run_out(run)


@api.post(
    "/runs/{run_id}/retry",
    response={202: RunOut, 409: ErrorOut, **FOUND_ERRORS, **BODY_ERRORS},
    by_alias=True,
    summary="Resume a failed run from its last checkpoint",
)
def retry_run(request: HttpRequest, run_id: uuid.UUID) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    run = services.run_retry(run=get_object_or_404(Run, pk=run_id), actor=request.user)
    return Status(202, run_out(run))


@api.post(
    "/runs/{run_id}/fork",
    response={201: ForkOut, 409: ErrorOut, **FOUND_ERRORS, **BODY_ERRORS},
    summary="Fork the run's conversation at a step into a new session that goes on from there",
)
def fork_run(request: HttpRequest, run_id: uuid.UUID, payload: ForkIn) -> Status[dict[str, Any]]:
    role_require(user=request.user, role="operator")
    run = get_object_or_404(Run, pk=run_id)
    fork = services.run_fork(
        run=run,
        step=payload.step,
        content=payload.content,
        allow_side_effects=payload.allow_side_effects,
        agent_version=payload.agent_version,
        model=payload.model,
        actor=request.user,
    )
    return Status(
        201,
        {
            "session": fork.session_id,
            "run": fork.pk,
            "agent_version": fork.agent_version.number if fork.agent_version else None,
            "forked_from": {"session": run.session_id, "run": run.pk, "step": payload.step},
        },
    )


@api.get(
    "/handoffs",
    response={200: HandoffsOut, **AUTH_ERRORS},
    summary="Handoffs, open ones first by priority then age",
)
def list_handoffs(
    request: HttpRequest,
    status: HandoffFilter = HandoffFilter.OPEN,
    label: Annotated[str, Query(max_length=50, description="Only conversations with it")] = "",
) -> dict[str, Any]:
    role_require(user=request.user, role="viewer")
    rows = (
        Handoff.objects.select_related("session__agent", "claimed_by", "team")
        .prefetch_related("session__labels")
        .order_by("priority", "created_at")
    )
    if status != HandoffFilter.ALL:
        rows = rows.filter(status=status.value)
    if label:
        rows = rows.filter(session__labels__name__iexact=label)
    return {"handoffs": [handoff_detail_serialise(h) for h in rows[:500]]}


@api.post(
    "/tool-calls/{tool_call_id}/decision",
    response={200: DecisionOut, 409: ErrorOut, **FOUND_ERRORS, **BODY_ERRORS},
    summary="Approve or reject a tool call waiting for approval",
)
def decide_tool_call(
    request: HttpRequest,
    tool_call_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    payload: DecisionIn,
) -> dict[str, Any]:
    role_require(user=request.user, role="operator")
    call = services.toolcall_decide(
        tool_call=get_object_or_404(ToolCall, pk=tool_call_id),
        approve=payload.approve,
        actor=request.user,
        note=payload.note,
    )
    return {"id": call.pk, "status": call.status}


# The inbox, by feature: handoffs claimed and reassigned, worked (reply, notes, transfer, hand
# back, close), snoozed and woken; conversations' labels; tool calls waiting for approval;
# ratings. Mounted in this order, the order of their operations in /api/openapi.json.
from agentops.operators.approvals import api as approvals_api  # noqa: E402
from agentops.operators.assignment import api as assignment_api  # noqa: E402
from agentops.operators.labels import api as labels_api  # noqa: E402
from agentops.operators.queue import api as queue_api  # noqa: E402
from agentops.operators.ratings import api as ratings_api  # noqa: E402
from agentops.operators.work import api as work_api  # noqa: E402

for inbox_router in (
    assignment_api.router,
    work_api.router,
    queue_api.router,
    labels_api.router,
    approvals_api.router,
    ratings_api.router,
):
    api.add_router("", inbox_router)

# Agents, versions and feedback: agentops/api_agents.py.
from agentops import api_agents  # noqa: E402

api.add_router("", api_agents.router)
# Tools (switches, retries, idempotency keys): agentops/api_tools.py.
from agentops import api_tools  # noqa: E402

api.add_router("", api_tools.router)
# Knowledge bases, sources and the retrieval test: agentops/api_knowledge.py.
from agentops import api_knowledge  # noqa: E402

api.add_router("", api_knowledge.router)
# Datasets and experiments: agentops/experiments/api.py.
from agentops.experiments import api as experiments_api  # noqa: E402

api.add_router("", experiments_api.router)
