"""The ASGI side of `/v1/`: an async application of its own, mounted in front of Django.

Why not a Django view: the middleware chain is sync (WhiteNoise, the database admission
middleware), so Django would run an async view in a thread for the whole request, and a
completion waits for a run (seconds to minutes). Here each request is a coroutine on the
server's event loop: database work goes through the shared `database_sync_to_async` pool
(a connection borrowed per call), and the run's tokens, messages and status arrive on the
session's group through the process's hub (tracing.platform.hub), as `/ws/sessions/<id>/`
follows it. Pub/sub may drop events, so the run's row is read every `POLL_SECONDS` too, and
the answer always comes from Postgres once the run has ended. Headers, the body, the key and
the access watch are agentops/asgi_http.py's, as for the event streams and `/mcp/`: a
completion ends with 403 `access_revoked` when its key is deleted or its user deactivated or
demoted.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError

from agentops import asgi_http
from agentops.asgi_http import HttpError, InvalidKey, Receive, Scope, Send
from agentops.auth import KeyHolder, has_role
from agentops.budgets.services import BudgetExceeded
from agentops.models import Agent, ApiKey, Run, Session
from agentops.openai_compat import selectors
from agentops.openai_compat.services import (
    SessionNotFound,
    chat_message_post,
    chat_session_resolve,
)
from agentops.runtime.services import MAX_MESSAGE_CHARS, AgentNotLive, RuntimeConflict
from tracing.platform.hub import AccessWatch, GroupHub, Listener
from tracing.platform.json_input import JsonInputError, json_parse
from tracing.platform.live import ACCESS_REVOKED, session_group
from tracing.platform.logs import get_logger

log = get_logger(__name__)

PREFIX = "/v1/"
POLL_SECONDS = 2.0
HANDOFF_NOTICE = "A person will join this conversation shortly."
# A client retrying a request whose run failed or is still going would post its message
# again: the official clients honour this header.
NO_RETRY = {"x-should-retry": "false"}
FINISHED = ("succeeded", "failed", "cancelled", "handed_off")
CLIENT_GONE = "client.gone"  # queued by this request when its client disconnects
ACCESS_REVOKED_TEXT = (
    "access revoked: this key was deleted, or its user deactivated or their role changed"
)


class ApiError(HttpError):
    """An OpenAI-shaped error: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
        super().__init__(status, body, headers)
        self.message = message
        self.type = type_
        self.param = param
        self.code = code


def mount(django_app: asgi_http.ASGIApp) -> asgi_http.ASGIApp:
    """The deployment's HTTP application: `/v1/…` here, everything else to Django."""
    return asgi_http.mount(PREFIX, application, django_app)


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    response = Response(send)
    try:
        body = await asgi_http.body_read(receive, too_large)
        if body is None:  # the client went away before it finished sending
            return
        method, path = scope["method"], scope["path"].rstrip("/")
        headers = asgi_http.headers_read(scope)
        routes: dict[str, Callable[..., Awaitable[None]]] = {
            "/v1/chat/completions": ChatCompletion(response, receive).handle,
            "/v1/models": list_models,
        }
        handler = routes.get(path)
        if handler is None and path.startswith("/v1/models/"):
            handler = retrieve_model
        if handler is None:
            raise ApiError(404, f"unknown path {path}", code="unknown_url")
        wanted = "POST" if handler is routes["/v1/chat/completions"] else "GET"
        if method != wanted:
            raise ApiError(405, f"{path} takes {wanted}", headers={"Allow": wanted})
        holder = await authenticate(scope)
        await handler(
            response, user=holder.user, holder=holder, headers=headers, body=body, path=path
        )
    except ApiError as error:
        await response.error(error)
    except DatabaseError as exc:
        log.warning("openai.database_unavailable", error=str(exc)[:300])
        await response.error(
            ApiError(
                503,
                "the database is busy or unavailable; retry in 2 s",
                type_="api_error",
                code="unavailable",
                headers={"Retry-After": "2"},
            )
        )


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body too large: at most {limit} bytes")


class Response(asgi_http.Response):
    """One HTTP response, sent once as JSON or as an event stream."""

    async def error(self, error: HttpError) -> None:
        if self.ended:
            return
        if self.started:  # mid-stream: an error event, as OpenAI sends it
            await self.event(error.body)
            await self.end()
            return
        headers = dict(error.headers)
        if error.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        await self.json(error.status, error.body, headers)


async def authenticate(scope: Scope) -> KeyHolder:
    try:
        holder = await asgi_http.key_holder(scope)
    except InvalidKey:
        raise ApiError(401, "invalid API key", code="invalid_api_key") from None
    if holder is None:
        raise ApiError(
            401,
            "authentication required: send 'Authorization: Bearer <api key>'",
            code="missing_api_key",
        )
    return holder


def model_object(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.slug,
        "object": "model",
        "created": int(agent.created_at.timestamp()),
        "owned_by": "agentops",
        "name": agent.name,
    }


async def list_models(response: Response, *, user: User, **_: object) -> None:
    agents = await database_sync_to_async(selectors.agents_listed)(user=user)
    await response.json(200, {"object": "list", "data": [model_object(a) for a in agents]})


async def retrieve_model(response: Response, *, user: User, path: str, **_: object) -> None:
    model = path.removeprefix("/v1/models/")
    agent = await database_sync_to_async(selectors.agent_by_model)(user=user, model=model)
    if agent is None:
        raise model_not_found(model)
    await response.json(200, model_object(agent))


def not_published(exc: AgentNotLive) -> ApiError:
    return ApiError(
        409, str(exc), type_="conflict_error", param="model", code="model_not_published"
    )


def budget_exceeded(exc: BudgetExceeded) -> ApiError:
    """OpenAI's shape of a limit: 429, `rate_limit_exceeded`, Retry-After. The official
    clients retry a 429 by themselves: not when the wait is longer than they would wait."""
    wait = exc.retry_after or 1
    return ApiError(
        429,
        exc.message,
        type_="rate_limit_error",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(wait), **(NO_RETRY if wait > 60 else {})},
    )


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model {model!r} does not exist or this key may not use it "
        "(a model is an agent's slug; GET /v1/models lists them).",
        param="model",
        code="model_not_found",
    )


def parse_request(body: bytes) -> dict[str, Any]:
    """The fields of a chat completion request this endpoint uses; 400 naming the field."""
    try:
        data = json_parse(body or b"null")
    except JsonInputError as exc:  # a NUL, a lone surrogate, nested too deep
        param = (exc.field or "").split(".")[0] or None
        raise ApiError(400, str(exc), param=param) from exc
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model: required, the agent's slug", param="model")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages: required, a non-empty list", param="messages")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        raise ApiError(
            400,
            "messages: the last message must be the user's (role 'user'); "
            "the agent keeps the conversation itself",
            param="messages",
        )
    content = last.get("content")
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ApiError(
                    400, "messages: only text content parts are supported", param="messages"
                )
            parts.append(str(part.get("text", "")))
        content = "\n".join(parts)
    if not isinstance(content, str) or not content.strip():
        raise ApiError(400, "messages: the last user message has no text", param="messages")
    if "\x00" in content:
        raise ApiError(400, "messages: must not contain NUL characters", param="messages")
    if len(content) > MAX_MESSAGE_CHARS:
        raise ApiError(
            400,
            f"messages: the last user message is longer than {MAX_MESSAGE_CHARS} characters",
            param="messages",
        )
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream: must be true or false", param="stream")
    end_user = data.get("user", "")
    if not isinstance(end_user, str) or len(end_user) > 200 or "\x00" in end_user:
        raise ApiError(400, "user: must be a string of at most 200 characters", param="user")
    options = data.get("stream_options") or {}
    return {
        "model": model,
        "content": content,
        "stream": stream,
        "user": end_user,
        "include_usage": bool(isinstance(options, dict) and options.get("include_usage")),
    }


def access_check(*, user_id: int, key_id: int | None = None) -> None:
    """The ACCESS_REVOKED refusal unless the key's user is, in the database now, active and
    an operator, and the key (when the request came with one) is not deleted."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    key_gone = key_id is not None and not ApiKey.objects.filter(pk=key_id).exists()
    if user is None or key_gone or not has_role(user, "operator"):
        raise ApiError(
            403,
            ACCESS_REVOKED_TEXT,
            type_="permission_error",
            code="access_revoked",
            headers=NO_RETRY,
        )


class ChatCompletion:
    """One `POST /v1/chat/completions`: post the message, then wait for (or stream) the run."""

    def __init__(self, response: Response, receive: Receive | None) -> None:
        self.response = response
        self.receive = receive
        self.listener = Listener()  # the session's group, through the hub
        self.events = self.listener.queue
        self.streamed = ""  # text streamed since the run's last assistant message
        self.answered: set[int] = set()  # assistant messages whose text the client has

    async def handle(
        self,
        response: Response,
        *,
        user: User,
        holder: KeyHolder,
        headers: dict[str, str],
        body: bytes,
        **_: object,
    ) -> None:
        request = parse_request(body)
        if not await database_sync_to_async(has_role)(user, "operator"):
            raise ApiError(
                403,
                "this key's user needs the operator role to talk to agents",
                type_="permission_error",
                code="insufficient_role",
            )
        agent = await database_sync_to_async(selectors.agent_by_model)(
            user=user, model=request["model"]
        )
        if agent is None:
            raise model_not_found(request["model"])
        self.model, self.stream = agent.slug, request["stream"]
        self.include_usage = request["include_usage"]
        session = await self.session(agent, user, request, headers)
        await self.converse(session, user, request["content"], holder)

    async def converse(
        self, session: Session, user: User, content: str, holder: KeyHolder | None = None
    ) -> None:
        """Post the user's message to the session and answer once its run has ended (also
        the MCP endpoint's tool call, which overrides `finish`)."""
        group = session_group(session.pk)
        hub = GroupHub.current()
        # Subscribed before the message is posted: no token of its run can be missed.
        await hub.join(group, self.listener)
        tasks = []
        if self.receive is not None:
            tasks.append(asyncio.create_task(self.watch_disconnect()))
        try:
            async with asgi_http.access_watch(user, holder) as access:
                # Checked again once joined: a revocation since the key was read (its event
                # gone before the join) is caught here, any later one by the watch.
                await database_sync_to_async(access_check)(
                    user_id=user.pk, key_id=holder.key_id if holder else None
                )
                tasks.append(asyncio.create_task(self.watch_access(access)))
                run = await self.post(session, user, content, holder)
                await self.answer(session, run)
        finally:
            for task in tasks:
                task.cancel()
            await hub.leave(group, self.listener)

    async def session(
        self, agent: Agent, user: User, request: dict[str, Any], headers: dict[str, str]
    ) -> Session:
        try:
            session, _ = await database_sync_to_async(chat_session_resolve)(
                agent=agent,
                user=user,
                session_id=headers.get("x-session-id", "").strip(),
                end_user=request["user"],
            )
        except SessionNotFound as exc:
            raise ApiError(404, str(exc), param="X-Session-Id", code="session_not_found") from exc
        except AgentNotLive as exc:
            raise not_published(exc) from exc
        return session

    async def post(
        self, session: Session, user: User, content: str, holder: KeyHolder | None = None
    ) -> Run | None:
        try:
            return await database_sync_to_async(chat_message_post)(
                session=session,
                user=user,
                content=content,
                api_key_id=holder.key_id if holder else None,
            )
        except BudgetExceeded as exc:
            raise budget_exceeded(exc) from exc
        except AgentNotLive as exc:
            raise not_published(exc) from exc
        except RuntimeConflict as exc:
            raise ApiError(409, str(exc), type_="conflict_error", code="session_busy") from exc
        except ValueError as exc:
            raise ApiError(400, f"messages: {exc}", param="messages") from exc

    async def watch_disconnect(self) -> None:
        assert self.receive is not None
        await asgi_http.disconnected(self.receive)
        self.events.put_nowait({"kind": CLIENT_GONE})

    async def watch_access(self, access: AccessWatch) -> None:
        """The key deleted, its owner deactivated or demoted: the answer ends as every
        stream does."""
        await access.revoked.wait()
        self.events.put_nowait({"kind": ACCESS_REVOKED})

    # -- the answer ------------------------------------------------------------------------
    async def answer(self, session: Session, run: Run | None) -> None:
        self.session_id = str(session.pk)
        self.headers = {"X-Session-Id": self.session_id}
        if run is None:  # a person has the conversation: the message waits for them
            self.completion_id = f"chatcmpl-{uuid.uuid4().hex}"
            self.created = int(time.time())
            handoff = await database_sync_to_async(selectors.session_handoff)(session_id=session.pk)
            outcome = selectors.RunOutcome(run_id=None, status="handed_off", handoff=handoff)
            await self.finish(outcome)
            return
        self.run_id = str(run.pk)
        self.completion_id = f"chatcmpl-{run.pk.hex}"
        self.created = int(run.created_at.timestamp())
        if self.stream:
            headers = {**self.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            await self.response.start(200, "text/event-stream", headers)
            await self.response.event(self.chunk({"role": "assistant", "content": ""}))
        deadline = time.monotonic() + settings.OPENAI_API_WAIT_SECONDS
        next_poll = time.monotonic() + POLL_SECONDS
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise ApiError(
                    504,
                    f"run {self.run_id} has not finished within {settings.OPENAI_API_WAIT_SECONDS} s;"
                    f" it goes on (session {self.session_id})",
                    type_="api_error",
                    code="run_timeout",
                    headers=NO_RETRY,
                )
            if now >= next_poll:
                next_poll = now + POLL_SECONDS
                outcome = await database_sync_to_async(selectors.run_outcome)(run_id=run.pk)
                if outcome.finished:
                    await self.finish(outcome)
                    return
            try:
                event = await asyncio.wait_for(
                    self.events.get(), timeout=max(min(next_poll, deadline) - now, 0.01)
                )
            except TimeoutError:
                continue
            if event.get("kind") == CLIENT_GONE:  # the client went away; the run goes on
                return
            if event.get("kind") == ACCESS_REVOKED:  # the run goes on too
                raise ApiError(
                    403,
                    ACCESS_REVOKED_TEXT,
                    type_="permission_error",
                    code="access_revoked",
                    headers=NO_RETRY,
                )
            if event.get("run_id", (event.get("message") or {}).get("run_id")) != self.run_id:
                continue
            kind = event.get("kind")
            if kind == "token" and self.stream:
                self.streamed += str(event.get("text", ""))
                await self.response.event(self.chunk({"content": str(event.get("text", ""))}))
            elif kind == "message" and event["message"].get("role") == "assistant":
                await self.reconcile(event["message"]["id"], event["message"].get("content") or "")
            elif kind == "run.status" and event.get("status") in FINISHED:
                outcome = await database_sync_to_async(selectors.run_outcome)(run_id=run.pk)
                await self.finish(outcome)
                return

    async def reconcile(self, message_id: int, content: str) -> None:
        """A stored assistant message: stream whatever of it the tokens did not bring."""
        if message_id in self.answered:
            return
        self.answered.add(message_id)
        streamed, self.streamed = self.streamed, ""
        if self.stream and content:
            missing = content[len(streamed) :] if content.startswith(streamed) else content
            if missing:
                await self.response.event(self.chunk({"content": missing}))

    async def finish(self, outcome: selectors.RunOutcome) -> None:
        if outcome.status in ("failed", "cancelled"):
            detail = f"{outcome.error_class}: {outcome.error_message}".strip(": ")
            raise ApiError(
                502,
                f"the agent's run {outcome.status}" + (f" ({detail})" if detail else ""),
                type_="api_error",
                code=f"run_{outcome.status}",
                headers=NO_RETRY,
            )
        handed_off = outcome.status == "handed_off"
        content = HANDOFF_NOTICE if handed_off else (outcome.answers or [(0, "")])[-1][1]
        extra = {
            "session_id": self.session_id,
            "run_id": str(outcome.run_id) if outcome.run_id else None,
            "handoff": outcome.handoff if handed_off else None,
        }
        usage = {
            "prompt_tokens": outcome.tokens_in,
            "completion_tokens": outcome.tokens_out,
            "total_tokens": outcome.tokens_in + outcome.tokens_out,
        }
        if not self.stream:
            body = {
                "id": self.completion_id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": usage,
                **extra,
            }
            await self.response.json(200, body, self.headers)
            return
        if not self.response.started:
            await self.response.start(200, "text/event-stream", self.headers)
            await self.response.event(self.chunk({"role": "assistant", "content": ""}))
        if handed_off:
            await self.response.event(self.chunk({"content": HANDOFF_NOTICE}))
        else:
            for message_id, text in outcome.answers:
                await self.reconcile(message_id, text)
        await self.response.event(self.chunk({}, finish_reason="stop", **extra))
        if self.include_usage:
            await self.response.event({**self.chunk({}), "choices": [], "usage": usage})
        await self.response.event("[DONE]")
        await self.response.end()

    def chunk(
        self, delta: dict[str, Any], finish_reason: str | None = None, **extra: object
    ) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            ],
            **extra,
        }
