"""The RQ worker class AgentOps runs (`rqworker --worker-class agentops.worker.Worker`).

RQ's forking Worker runs each job in a fresh child (the work horse): a crashing or killed
run never takes the worker down, and a stuck one can be killed alone. The price is that
everything a job loads lazily is loaded again in every child. Measured with
bench/step_overhead.py, two things made that price high, and this class removes both:

- The openai client's lazy imports, pydantic schemas and TLS context cost ~70 ms per run.
  The parent loads them once, before it forks, by running one complete streamed
  completion against an in-memory transport (no socket is opened).
- A database connection per child meant a new Postgres backend per run, whose cold caches
  made every first statement slow (~18 ms more per run, ~1 ms more per step). The parent
  keeps one connection and lends it to each horse in turn. They never use it at the same
  time: the parent waits while a horse runs. A horse that ends normally leaves it idle or
  closes it; after a horse that was killed or crashed the parent closes its copy at once,
  unread, because what the horse left on the wire is unknown (closing also ends any
  transaction the horse left open).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from typing import Any

import httpx2
import openai
from channels.layers import get_channel_layer
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from psycopg.pq import TransactionStatus
from redis.exceptions import RedisError
from rq.worker import Worker as RQWorker

from agentops.reconnect import redis_wait
from tracing.logs import get_logger

log = get_logger(__name__)

# How often a worker reports that it is alive, idle or busy (/healthz trusts a heartbeat for
# three times this). RQ's default is one every 405 s while idle.
HEARTBEAT_SECONDS = 10

_WARM_UP_STREAM: list[dict[str, Any]] = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "warm"}}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_0",
                            "type": "function",
                            "function": {"name": "warm", "arguments": "{}"},
                        }
                    ]
                },
                "finish_reason": "tool_calls",
            }
        ]
    },
    {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
]


def _warm_up_response(request: httpx2.Request) -> httpx2.Response:
    base: dict[str, Any] = {
        "id": "warm-up",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "warm",
    }
    body = "".join(f"data: {json.dumps(base | chunk)}\n\n" for chunk in _WARM_UP_STREAM)
    return httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=body + "data: [DONE]\n\n"
    )


def warm_up() -> None:
    from agentops.runtime import loop  # noqa: F401
    from agentops.runtime.context import count_tokens
    from agentops.runtime.model_client import stream_reply, tls_context

    count_tokens("warm up the o200k encoding")
    get_channel_layer()  # imports the Redis layer; it connects per event loop, so in the child
    tls_context()
    client = openai.OpenAI(
        api_key="warm-up",
        base_url="http://warm-up.invalid/v1",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=httpx2.MockTransport(_warm_up_response)),
    )
    with client:
        stream_reply(
            client,
            {
                "model": "warm",
                "messages": [{"role": "user", "content": "warm up"}],
                "tools": [{"type": "function", "function": {"name": "warm", "parameters": {}}}],
            },
        )
    connections.close_all()  # the connection horses inherit is opened by database_lend()
    gc.freeze()  # a child's collections then never walk (and so copy) what it inherited


def database_lend() -> None:
    """In the parent: make sure the connection the next horse inherits is open and idle.

    When Postgres refuses one (too many clients, or down), the horse inherits none and
    connects by itself; if it cannot either, its job fails and the scheduler re-enqueues the
    run. The worker itself must outlive the refusal: an exception here would end it."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.connection is not None and not connection.is_usable():
        connection.close()
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        log.warning("worker.database_unavailable", error=str(exc.__cause__ or exc).strip()[:300])
        connection.close()


def database_return() -> None:
    """In the horse, after its job: close the connection unless it is idle and reusable."""
    connection = connections[DEFAULT_DB_ALIAS]
    raw = connection.connection
    if raw is not None and (
        connection.in_atomic_block
        or connection.errors_occurred
        or raw.info.transaction_status != TransactionStatus.IDLE
    ):
        connection.close()


class Worker(RQWorker):
    """RQ's forking worker, warmed up before it forks, that outlives a Redis outage: RQ's own
    loop quits on most Redis errors; this one waits for Redis and starts listening again,
    and a horse that is driving a run is waited for, not abandoned, while Redis is away."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_monitoring_interval = min(self.job_monitoring_interval, HEARTBEAT_SECONDS)

    @property
    def dequeue_timeout(self) -> int:
        return min(super().dequeue_timeout, HEARTBEAT_SECONDS)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        warm_up()
        finite = any(kwargs.get(name) for name in ("burst", "max_jobs", "max_idle_time"))
        while True:
            try:
                worked = super().work(*args, **kwargs)
                if finite or self.stopping:
                    return worked
                log.warning("worker.loop_ended", worker=self.name)
            except RedisError as exc:
                log.warning("worker.redis_lost", worker=self.name, error=str(exc))
            if self.stopping:
                return False
            redis_wait(connection=self.connection, process=f"worker {self.name}")
            self._forget_registration()

    @property
    def stopping(self) -> bool:
        """A warm or cold shutdown was asked for (RQ leaves `_stop_requested` unset when idle)."""
        return self._stop_requested or self._shutdown_requested_date is not None

    def _forget_registration(self) -> None:
        """After an outage: stop the old command listener and mark the old registration dead
        (a restarted Redis may have restored it from its snapshot), so that RQ can register
        this worker again under its name."""
        if self.pubsub_thread is not None:
            with contextlib.suppress(Exception):
                self.pubsub_thread.stop()
                self.pubsub_thread.join(timeout=1)
            self.pubsub_thread = None
        with contextlib.suppress(RedisError):
            self.register_death()

    def maintain_heartbeats(self, job: Any, execution: Any) -> None:
        try:
            super().maintain_heartbeats(job, execution)
        except RedisError as exc:
            log.warning("worker.heartbeat_failed", worker=self.name, error=str(exc))

    def execute_job(self, job: Any, queue: Any) -> None:
        database_lend()
        super().execute_job(job, queue)

    def wait_for_horse(self) -> Any:
        pid, status, rusage = super().wait_for_horse()
        if status != os.EX_OK:
            connections[DEFAULT_DB_ALIAS].close()
        return pid, status, rusage

    def perform_job(self, job: Any, queue: Any, execution: Any) -> bool:
        try:
            return super().perform_job(job, queue, execution)
        finally:
            database_return()
