"""The deployment's one scheduler: RQ's cron scheduler for the periodic jobs in
agentops/cron.py, plus the run reconciler, run inline every second so that waking
waiting runs and recovering runs whose worker died never waits for a free worker."""

from __future__ import annotations

import time
from types import FrameType
from typing import Any

import django_rq
from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections
from django_rq.cron import DjangoCronScheduler
from redis.exceptions import RedisError
from rq.exceptions import StopRequested

from agentops.reconnect import redis_wait
from agentops.runtime.services import runs_reconcile
from tracing.platform.logs import get_logger

log = get_logger(__name__)
TICK_SECONDS = 1.0


class ReconcilingScheduler(DjangoCronScheduler):
    last_reconcile = 0.0
    stopping = False

    def start(self) -> None:
        """RQ's cron loop, started again after a Redis outage instead of exiting."""
        while True:
            try:
                super().start()
                return
            except RedisError as exc:
                if self.stopping:
                    return
                log.warning("scheduler.redis_lost", scheduler=self.name, error=str(exc))
            redis_wait(connection=self.connection, process=f"scheduler {self.name}")

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:  # a second signal must not interrupt the shutdown it started
            return
        self.stopping = True
        super()._request_stop(signum, frame)

    def enqueue_jobs(self) -> list[Any]:
        enqueued = super().enqueue_jobs()
        now = time.monotonic()
        if now - self.last_reconcile >= TICK_SECONDS:
            self.last_reconcile = now
            try:
                counts = runs_reconcile()
                if any(counts.values()):
                    log.info("scheduler.reconciled", **counts)
            except (DatabaseError, RedisError):
                log.exception("scheduler.reconcile_failed")
                close_old_connections()
        return enqueued

    def calculate_sleep_interval(self) -> float:
        return min(super().calculate_sleep_interval(), TICK_SECONDS)


class Command(BaseCommand):
    help = "Run the scheduler: periodic jobs (agentops/cron.py) and the run reconciler. Run exactly one."

    def handle(self, *args: Any, **options: Any) -> None:
        connection = django_rq.get_connection(settings.MAINTENANCE_QUEUE)
        scheduler = ReconcilingScheduler(connection=connection)
        try:
            scheduler.load_config_from_file("agentops.cron")
            scheduler.start()
        except (StopRequested, KeyboardInterrupt):  # stopped while starting: stopping is normal
            pass
