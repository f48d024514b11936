"""The RQ worker classes AgentOps runs (`rqworker --worker-class agentops.worker.Worker`,
or `agentops.worker.ConcurrentWorker` for many runs at once in one process, at the end).

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
import contextvars
import gc
import json
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, cast

import httpx2
import openai
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from psycopg.pq import TransactionStatus
from redis.exceptions import RedisError
from rq.exceptions import StopRequested
from rq.job import Job
from rq.queue import Queue
from rq.timeouts import BaseDeathPenalty
from rq.worker import BaseWorker
from rq.worker import Worker as RQWorker

from agentops.reconnect import redis_wait
from memory.services import memory_recall_flush
from tracing.platform.logs import get_logger
from tracing.platform.types import RunId

if TYPE_CHECKING:
    from resource import struct_rusage
    from types import FrameType

    from redis.client import Pipeline, PubSubWorkerThread
    from rq.executions import Execution

log = get_logger(__name__)

# How often a worker reports that it is alive, idle or busy (settings.WORKER_HEARTBEAT_SECONDS).
HEARTBEAT_SECONDS = settings.WORKER_HEARTBEAT_SECONDS

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
        with contextlib.suppress(Exception):
            self._listener_stop()
        with contextlib.suppress(RedisError):
            self.register_death()

    def unsubscribe(self) -> None:
        """RQ's own teardown waits out the command listener's 60 s poll (redis-py 8 joins the
        thread in stop()), so a stopped worker lingered up to a minute after its last job."""
        if self._listener() is not None:
            self.log.info(
                "Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name
            )
            self._listener_stop()

    def _listener(self) -> PubSubWorkerThread | None:
        # RQ sets the listener thread after its __init__ left it None; its type says None only.
        return cast("PubSubWorkerThread | None", self.pubsub_thread)

    def _listener_stop(self) -> None:
        """Stop the command listener at once: clear its flag first (stop with no wait), then
        unsubscribe, whose reply wakes its blocking read so it sees the flag and ends."""
        thread = self._listener()
        if thread is None:
            return
        thread.stop(timeout=0)
        if self.pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                self.pubsub.unsubscribe()
        thread.join(timeout=2)
        self.pubsub_thread = None

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        try:
            super().maintain_heartbeats(job, execution)
        except RedisError as exc:
            log.warning("worker.heartbeat_failed", worker=self.name, error=str(exc))

    def execute_job(self, job: Job, queue: Queue) -> None:
        database_lend()
        super().execute_job(job, queue)

    def wait_for_horse(self) -> tuple[int | None, int | None, struct_rusage | None]:
        pid, status, rusage = super().wait_for_horse()
        if status != os.EX_OK:
            connections[DEFAULT_DB_ALIAS].close()
        return pid, status, rusage

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        """In the work horse, which RQ ends with os._exit (no exit handlers run)."""
        try:
            return super().perform_job(job, queue, execution)
        finally:
            memory_recall_flush()  # the recall bookkeeping written behind the run
            database_return()


# -- many runs at once in one process ----------------------------------------------------------

# The time limit of the job this thread performs: (its seconds, when it ends on time.monotonic()).
_job_deadline: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "job_deadline", default=None
)


class RuntimeDeadline(BaseDeathPenalty):
    """RQ's job timeout is a SIGALRM, which only the main thread can receive, and nothing can
    stop a thread from outside. A job running in a thread instead gets its deadline through
    `_job_deadline`; the shared heartbeat fails the run when it passes (see SharedHeartbeat)."""

    def setup_death_penalty(self) -> None:
        return

    def cancel_death_penalty(self) -> None:
        return


class HeldRun:
    """One run's place in its process's shared heartbeat (the `RunBeat` the loop checks)."""

    def __init__(self, owner: SharedHeartbeat, run_id: RunId, epoch: int) -> None:
        self.owner = owner
        self.run_id = run_id
        self.epoch = epoch
        self.deadline = _job_deadline.get()
        self.lost = threading.Event()

    def stop(self) -> None:
        self.owner.leave(self)


class SharedHeartbeat:
    """One thread per worker process refreshes the heartbeat of every run the process drives,
    in one UPDATE every HEARTBEAT_SECONDS (agentops.runtime.loop), instead of a thread and a
    connection per run. A run that is no longer held at its epoch (taken over, cancelled) is
    told so through `lost` and stops at its next check or write, as with its own heartbeat;
    a run past its job's deadline is failed here, fenced, and told the same way."""

    def __init__(self) -> None:
        self.held: set[HeldRun] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def join(self, run_id: RunId, epoch: int) -> HeldRun:
        held = HeldRun(self, run_id, epoch)
        with self.lock:
            self.held.add(held)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="heartbeat", daemon=True)
                self.thread.start()
        return held

    def leave(self, held: HeldRun) -> None:
        with self.lock:
            self.held.discard(held)

    def run(self) -> None:
        from agentops.runtime.loop import HEARTBEAT_SECONDS

        while True:
            time.sleep(HEARTBEAT_SECONDS)
            try:
                self.beat()
            except DatabaseError as exc:
                log.warning("worker.heartbeat_database_error", error=str(exc).strip()[:300])
            except Exception:
                log.exception("worker.heartbeat_failed")
            finally:
                connection.close()  # back to the pool until the next beat

    def beat(self) -> None:
        from agentops.runtime.checkpoint import run_time_out, runs_heartbeat

        with self.lock:
            members = list(self.held)
        now = time.monotonic()
        for member in members:
            if (
                member.deadline is not None
                and now > member.deadline[1]
                and not member.lost.is_set()
            ):
                run_time_out(run_id=member.run_id, epoch=member.epoch, seconds=member.deadline[0])
                log.warning("run.timed_out", run_id=str(member.run_id), epoch=member.epoch)
                member.lost.set()
        live = [m for m in members if not m.lost.is_set()]
        held = runs_heartbeat(held=[(m.run_id, m.epoch) for m in live])
        for member in live:
            if (member.run_id, member.epoch) not in held:
                member.lost.set()


def database_pool_configure() -> None:
    """Give this process a bounded psycopg pool (DB_POOL_SIZE, DB_POOL_TIMEOUT), shared by its
    job threads: a thread holds a connection only while it reads or writes (the model client
    gives it back before each call, see model_client.connection_release)."""
    connections.close_all()
    database = connections.settings[DEFAULT_DB_ALIAS]
    database["CONN_MAX_AGE"] = 0
    database.setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": settings.DB_POOL_SIZE,
        "timeout": settings.DB_POOL_TIMEOUT,
    }


class ConcurrentWorker(Worker):
    """Drives up to WORKER_CONCURRENCY jobs at once, each in a thread of this process.

    A run spends almost all its time waiting for the model; a thread waits cheaply where a
    forked process per run costs ~300 MB. Built on RQ's own execution tracking (RQ 3 keeps
    several executions per worker: `worker.executions`, `get_current_executions()`), so RQ's
    registries, job statuses and `rqinfo` stay right. What the forking worker gets from a
    process per job, this one does otherwise:

    - a job that raises is failed by RQ's `perform_job`, in its thread; nothing a job does
      short of killing the process (a segfault, `os._exit`, running out of memory) ends it;
    - database connections come from one bounded pool (`database_pool_configure`);
    - one heartbeat thread for all the process's runs (`SharedHeartbeat`);
    - job timeouts: the run is failed at its deadline by the heartbeat, since no signal can
      stop a thread; the thread itself ends at the run's next check (a stuck tool holds its
      thread, not the run's outcome).

    A SIGKILL takes all its runs down at once; the scheduler finds their heartbeats stale and
    they resume from their checkpoints elsewhere, like one killed forking worker's run.
    """

    death_penalty_class = RuntimeDeadline

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.concurrency = int(settings.WORKER_CONCURRENCY)
        self.running: dict[str, tuple[Job, Any, threading.Thread]] = {}
        self.slots = threading.Condition()
        self.heartbeats = SharedHeartbeat()
        self.cold = False
        self.finite = False
        self.dequeueing = False
        self.heartbeats_maintained_at = 0.0
        self.beat_at = 0.0
        self.suspension_checked_at = 0.0
        self.state_sent: tuple[str, float] = ("", 0.0)

    def work(self, *args: Any, **kwargs: Any) -> bool:
        from agentops.runtime import loop

        self.finite = any(kwargs.get(name) for name in ("burst", "max_jobs", "max_idle_time"))
        database_pool_configure()
        loop.heartbeat_start = self.heartbeats.join
        # The thread that dequeues waits for the GIL after each Redis round trip; with many
        # runs busy, the default 5 ms switch interval made starting 100 runs take seconds.
        sys.setswitchinterval(0.001)
        return super().work(*args, **kwargs)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Dequeue only when a slot is free; the RQ heartbeats of running jobs are kept up
        while waiting (RQ's dequeue blocks at most `dequeue_timeout`, HEARTBEAT_SECONDS)."""
        if time.monotonic() - self.heartbeats_maintained_at > self.job_monitoring_interval / 2:
            self.maintain_running_heartbeats()
        with self.slots:
            while len(self.running) >= self.concurrency:
                if self._stop_requested:
                    return None
                self.slots.wait(self.job_monitoring_interval)
                self.maintain_running_heartbeats()
        if self._stop_requested:
            return None
        self.dequeueing = True
        try:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        finally:
            self.dequeueing = False

    def _shutdown(self) -> None:
        """A warm stop asked while runs are in flight: RQ only marks it (the worker is busy)
        and its dequeue loop never looks at the mark, so the main thread would wait for a job
        forever. While it waits in the dequeue, end the wait; teardown then lets the runs in
        flight finish. (A job popped at that very moment is re-enqueued by runs_reconcile.)"""
        if self.dequeueing:
            self._stop_requested = True
            raise StopRequested()
        super()._shutdown()

    def maintain_running_heartbeats(self) -> None:
        self.heartbeats_maintained_at = time.monotonic()
        for job, execution, _ in list(self.running.values()):
            self.maintain_heartbeats(job, execution)

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        thread = threading.Thread(
            target=self.perform_in_thread, args=(job, queue, execution), name=f"job-{job.id}"
        )
        thread.daemon = True
        with self.slots:
            self.running[execution.id] = (job, execution, thread)
        thread.start()

    def perform_in_thread(self, job: Job, queue: Queue, execution: Execution) -> None:
        timeout = job.timeout or self.queue_class.DEFAULT_TIMEOUT
        if timeout and timeout > 0:
            _job_deadline.set((timeout, time.monotonic() + timeout))
        try:
            BaseWorker.perform_job(self, job, queue, execution)
        except BaseException:  # never let one job take the process down
            log.exception("worker.job_crashed", job_id=job.id)
        finally:
            with contextlib.suppress(Exception):
                connection.close()  # back to the pool
            with self.slots:
                self.running.pop(execution.id, None)
                self.executions.pop(execution.id, None)
                self.slots.notify_all()
            if not self.running:
                with contextlib.suppress(RedisError):
                    self.set_state("idle")

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        # RQ beats twice per job dequeued, three round trips each; with many runs starting at
        # once, once a second is plenty (its TTL is minutes) and keeps the dequeue loop quick.
        if timeout is None and pipeline is None:
            now = time.monotonic()
            if now - self.beat_at < 1.0:
                return
            self.beat_at = now
        super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        # RQ marks the worker idle whenever it listens; it is busy while a run is in flight.
        state = "busy" if state == "idle" and self.running else state
        # And it sets it before every dequeue, a Redis round trip each: the same state is sent
        # again at most once a second (so a registration made anew after an outage gets it).
        now = time.monotonic()
        if pipeline is None and self.state_sent[0] == state and now - self.state_sent[1] < 1.0:
            self._state = state
            return
        super().set_state(state, pipeline)
        self.state_sent = (state, now) if pipeline is None else ("", 0.0)

    def check_for_suspension(self, burst: bool) -> None:
        # RQ asks Redis before every dequeue; once a second is soon enough for `rq suspend`.
        now = time.monotonic()
        if now - self.suspension_checked_at < 1.0:
            return
        self.suspension_checked_at = now
        super().check_for_suspension(burst)

    def request_force_stop(self, signum: int, frame: FrameType | None) -> None:
        self.cold = True
        super().request_force_stop(signum, frame)

    def teardown(self) -> None:
        """On a warm shutdown (or at the end of a burst) wait for the runs in flight, keeping
        their RQ heartbeats up; a cold one (a second SIGTERM) leaves them to be resumed
        elsewhere. After a Redis outage RQ's loop ends too: the runs go on meanwhile."""
        while self.running and not self.cold and (self.stopping or self.finite):
            with self.slots:
                self.slots.wait(self.job_monitoring_interval)
            with contextlib.suppress(RedisError):
                self.maintain_running_heartbeats()
        super().teardown()
