"""The one way to send an RQ job: once the caller's transaction commits, surviving Redis.

Postgres holds the work (a queued run, a handoff without its package, a due webhook delivery,
an experiment pair starting, a memory without its vector); the job only says "do it now".
So Redis being away when the job is sent is logged, never raised into a request or a worker:
the caller's sweep (named in `sweep`, and in the log line) sends it again once Redis is back.
Only Redis's own errors are caught; any other failure is a bug and is raised.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from redis.exceptions import RedisError
from rq import Queue

from tracing.platform.logs import get_logger

log = get_logger(__name__)

# One RQ queue (and its Redis connection pool) per queue name, settings and process:
# django_rq.get_queue builds a new Redis client, and so a new connection, on every call.
_queues: dict[tuple[int, str, str], Queue] = {}


def _queue(name: str) -> Queue:
    key = (os.getpid(), name, repr(sorted(settings.RQ_QUEUES[name].items())))
    queue = _queues.get(key)
    if queue is None:
        queue = _queues[key] = django_rq.get_queue(name)
    return queue


def queue_job_on_commit(
    *,
    queue: str,
    func: str,
    args: Sequence[Any] = (),
    each: Sequence[Sequence[Any]] | None = None,
    job_id: str | None = None,
    job_timeout: int | None = None,
    result_ttl: int = 300,
    failure_ttl: int = 86400,
    sweep: str,
) -> None:
    """Enqueue `func(*args)` on `queue` after the commit (at once outside a transaction).
    `each` sends one job per argument tuple instead (stopping at the first Redis error: the
    rest wait for the same sweep). `job_timeout` None takes the queue's default."""
    if each is not None and job_id is not None:
        raise ValueError("one job id cannot name several jobs")
    calls = [tuple(args)] if each is None else [tuple(a) for a in each]
    if not calls:
        return

    def send() -> None:
        try:
            target = _queue(queue)
            for call_args in calls:
                target.enqueue(
                    func,
                    *call_args,
                    job_id=job_id,
                    job_timeout=job_timeout,
                    result_ttl=result_ttl,
                    failure_ttl=failure_ttl,
                )
        except RedisError as exc:
            log.warning(
                "job.enqueue_deferred",
                queue=queue,
                job=func,
                job_id=job_id,
                jobs=len(calls),
                sweep=sweep,
                error=str(exc),
            )

    transaction.on_commit(send)
