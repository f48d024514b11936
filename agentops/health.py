"""Is each service of the deployment up? Used by the home page and /healthz."""

from __future__ import annotations

from dataclasses import dataclass

import django_rq
from django.db import connection
from rq import Worker
from rq.cron_scheduler_registry import get_keys as cron_scheduler_keys


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    up: bool
    detail: str


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
        redis = django_rq.get_connection("runs")
        redis.ping()
        statuses.append(ServiceStatus("Redis", True, "answering"))
        workers = Worker.all(connection=redis)
        statuses.append(
            ServiceStatus(
                "Worker", bool(workers), f"{len(workers)} running" if workers else "none running"
            )
        )
        schedulers = cron_scheduler_keys(redis)
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
