"""The ASGI side of `/v1/`: an async application of its own, mounted in front of Django.

Why not a Django view: the middleware chain is sync (WhiteNoise, the database admission
middleware), so Django would run an async view in a thread for the whole request, and a
completion waits for a run (seconds to minutes). Here each request is a coroutine on the
server's event loop: database work goes through the shared `database_sync_to_async` pool
(a connection borrowed per call), and the run's tokens, messages and status arrive on the
session's channel-layer group, the same one `/ws/sessions/<id>/` follows. Pub/sub may drop
events, so the run's row is read every `POLL_SECONDS` too, and the answer always comes from
Postgres once the run has ended.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError

from agentops.auth import api_key_user, bearer_token, has_role
from agentops.openai_compat import selectors
from agentops.openai_compat.services import (
    SessionNotFound,
    chat_message_post,
    chat_session_resolve,
)
from agentops.runtime.services import MAX_MESSAGE_CHARS, AgentNotLive, RuntimeConflict
from tracing.consumers import AccessWatch
from tracing.platform.json_input import JsonInputError, json_parse
from tracing.platform.live import ACCESS_REVOKED, session_group
from tracing.platform.logs import get_logger

log = get_logger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PREFIX = "/v1/"
POLL_SECONDS = 2.0
HANDOFF_NOTICE = "A person will join this conversation shortly."
# A client retrying a request whose run failed or is still going would post its message
# again: the official clients honour this header.
NO_RETRY = {"x-should-retry": "false"}
FINISHED = ("succeeded", "failed", "cancelled", "handed_off")


class ApiError(Exception):
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
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def mount(django_app: Any) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The deployment's HTTP application: `/v1/…` here, everything else to Django."""

    async def http(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (scope["path"] + "/").startswith(PREFIX):
            await application(scope, receive, send)
        else:
            await django_app(scope, receive, send)

    return http


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    response = Response(send)
    try:
        body = await read_body(receive)
        if body is None:  # the client went away before it finished sending
            return
        method, path = scope["method"], scope["path"].rstrip("/")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
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
        user = await authenticate(headers)
        await handler(response, user=user, headers=headers, body=body, path=path)
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


async def read_body(receive: Receive) -> bytes | None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**31
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body too large: at most {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


class Response:
    """One HTTP response, sent once as JSON or as an event stream."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False
        self.ended = False

    async def start(self, status: int, content_type: str, headers: dict[str, str]) -> None:
        self.started = True
        raw = [(b"content-type", content_type.encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await self.send({"type": "http.response.start", "status": status, "headers": raw})

    async def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        await self.start(status, "application/json", headers or {})
        await self.end(json.dumps(body).encode())

    async def event(self, data: Any) -> None:
        text = data if isinstance(data, str) else json.dumps(data)
        await self.send(
            {"type": "http.response.body", "body": f"data: {text}\n\n".encode(), "more_body": True}
        )

    async def end(self, body: bytes = b"") -> None:
        self.ended = True
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def error(self, error: ApiError) -> None:
        if self.ended:
            return
        if self.started:  # mid-stream: an error event, as OpenAI sends it
            await self.event(error.body())
            await self.end()
            return
        headers = dict(error.headers)
        if error.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        await self.json(error.status, error.body(), headers)


async def authenticate(headers: dict[str, str]) -> Any:
    token = bearer_token(headers.get("authorization"))
    if token is None:
        raise ApiError(
            401,
            "authentication required: send 'Authorization: Bearer <api key>'",
            code="missing_api_key",
        )
    user = await database_sync_to_async(api_key_user)(token)
    if user is None:
        raise ApiError(401, "invalid API key", code="invalid_api_key")
    return user


def model_object(agent: Any) -> dict[str, Any]:
    return {
        "id": agent.slug,
        "object": "model",
        "created": int(agent.created_at.timestamp()),
        "owned_by": "agentops",
        "name": agent.name,
    }


async def list_models(response: Response, *, user: Any, **_: Any) -> None:
    agents = await database_sync_to_async(selectors.agents_listed)(user=user)
    await response.json(200, {"object": "list", "data": [model_object(a) for a in agents]})


async def retrieve_model(response: Response, *, user: Any, path: str, **_: Any) -> None:
    model = path.removeprefix("/v1/models/")
    agent = await database_sync_to_async(selectors.agent_by_model)(user=user, model=model)
    if agent is None:
        raise model_not_found(model)
    await response.json(200, model_object(agent))


def not_published(exc: AgentNotLive) -> ApiError:
    return ApiError(
        409, str(exc), type_="conflict_error", param="model", code="model_not_published"
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


def access_check(*, user_id: Any) -> None:
    """The ACCESS_REVOKED refusal unless the key's user is, in the database now, active and
    an operator."""
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not has_role(user, "operator"):
        raise ApiError(
            403,
            "access revoked: this key's user was deactivated or their role changed",
            type_="permission_error",
            code="access_revoked",
            headers=NO_RETRY,
        )


class ChatCompletion:
    """One `POST /v1/chat/completions`: post the message, then wait for (or stream) the run."""

    def __init__(self, response: Response, receive: Receive | None) -> None:
        self.response = response
        self.receive = receive
        self.events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.streamed = ""  # text streamed since the run's last assistant message
        self.answered: set[int] = set()  # assistant messages whose text the client has

    async def handle(
        self, response: Response, *, user: Any, headers: dict[str, str], body: bytes, **_: Any
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
        await self.converse(session, user, request["content"])

    async def converse(self, session: Any, user: Any, content: str) -> None:
        """Post the user's message to the session and answer once its run has ended (also
        the MCP endpoint's tool call, which overrides `finish`)."""
        layer = get_channel_layer()
        channel = await layer.new_channel()
        group = session_group(session.pk)
        # Subscribed before the message is posted: no token of its run can be missed.
        await layer.group_add(group, channel)
        tasks = [asyncio.create_task(self.pump(layer, channel))]
        if self.receive is not None:
            tasks.append(asyncio.create_task(self.watch_disconnect()))
        try:
            async with AccessWatch(user.pk) as access:
                # Checked again once joined: a revocation since the key was read (its event
                # gone before the join) is caught here, any later one by the watch.
                await database_sync_to_async(access_check)(user_id=user.pk)
                tasks.append(asyncio.create_task(self.watch_access(access)))
                run = await self.post(session, user, content)
                await self.answer(session, run)
        finally:
            for task in tasks:
                task.cancel()
            await layer.group_discard(group, channel)

    async def session(
        self, agent: Any, user: Any, request: dict[str, Any], headers: dict[str, str]
    ) -> Any:
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

    async def post(self, session: Any, user: Any, content: str) -> Any:
        try:
            return await database_sync_to_async(chat_message_post)(
                session=session, user=user, content=content
            )
        except AgentNotLive as exc:
            raise not_published(exc) from exc
        except RuntimeConflict as exc:
            raise ApiError(409, str(exc), type_="conflict_error", code="session_busy") from exc
        except ValueError as exc:
            raise ApiError(400, f"messages: {exc}", param="messages") from exc

    async def pump(self, layer: Any, channel: str) -> None:
        """Move the group's messages into this request's queue (cancelling a channel layer
        receive unsubscribes the channel, so it is never waited on with a timeout)."""
        while True:
            message = await layer.receive(channel)
            if message.get("type") == "live.batch":
                for event in message["events"]:
                    self.events.put_nowait(event)
            elif message.get("type") == "live.event":
                self.events.put_nowait(message["event"])

    async def watch_disconnect(self) -> None:
        assert self.receive is not None
        while (await self.receive())["type"] != "http.disconnect":
            pass
        self.events.put_nowait(None)

    async def watch_access(self, access: AccessWatch) -> None:
        """The key's owner deactivated or demoted: the answer ends as their streams do."""
        await access.revoked.wait()
        self.events.put_nowait({"kind": ACCESS_REVOKED})

    # -- the answer ------------------------------------------------------------------------
    async def answer(self, session: Any, run: Any) -> None:
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
            if event is None:  # the client went away; the run goes on
                return
            if event.get("kind") == ACCESS_REVOKED:  # the run goes on too
                raise ApiError(
                    403,
                    "access revoked: this key's user was deactivated or their role changed",
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

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> dict:
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
