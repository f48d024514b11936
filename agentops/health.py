"""Is each service of the deployment up? Used by the home page and /healthz."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import django_rq
from django.conf import settings
from django.db import connection
from redis import Redis
from rq import Worker
from rq.cron_scheduler_registry import get_registry_key as cron_scheduler_registry_key

# A worker or scheduler counts as running while its last heartbeat is this recent. Registrations
# outlive a killed process (RQ keeps a worker's for minutes, a scheduler's until cleaned up).
HEARTBEAT_FRESH_SECONDS = 3 * settings.WORKER_HEARTBEAT_SECONDS


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    detail: str


def live_worker_names(*, redis: Redis) -> list[str]:
    fresh_since = datetime.now(UTC) - timedelta(seconds=HEARTBEAT_FRESH_SECONDS)
    return [
        worker.name
        for worker in Worker.all(connection=redis)
        if worker.last_heartbeat and worker.last_heartbeat >= fresh_since
    ]


def live_scheduler_names(*, redis: Redis) -> list[str]:
    fresh_since = time.time() - HEARTBEAT_FRESH_SECONDS
    names = redis.zrangebyscore(cron_scheduler_registry_key(), fresh_since, "+inf")
    return [name.decode() if isinstance(name, bytes) else str(name) for name in names]


def services_status() -> list[ServiceStatus]:
    statuses = []
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = cursor.fetchone()
        statuses.append(
            ServiceStatus("Postgres", True, f"pgvector {row[0]}" if row else "no pgvector")
        )
    except Exception as exc:
        statuses.append(ServiceStatus("Postgres", False, type(exc).__name__))
    try:
        redis = django_rq.get_connection(settings.RUN_QUEUE)
        redis.ping()
        statuses.append(ServiceStatus("Redis", True, "answering"))
        workers = live_worker_names(redis=redis)
        statuses.append(
            ServiceStatus(
                "Worker", bool(workers), f"{len(workers)} running" if workers else "none running"
            )
        )
        schedulers = live_scheduler_names(redis=redis)
        statuses.append(
            ServiceStatus(
                "Scheduler",
                bool(schedulers),
                f"{len(schedulers)} running" if schedulers else "not running",
            )
        )
    except Exception as exc:
        statuses.append(ServiceStatus("Redis", False, type(exc).__name__))
        statuses.append(ServiceStatus("Worker", False, "Redis is down"))
        statuses.append(ServiceStatus("Scheduler", False, "Redis is down"))
    return statuses
