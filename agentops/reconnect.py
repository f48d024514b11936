"""Waiting out a Redis outage. Redis is only a queue here (Postgres is the source of truth),
so a long-running process that loses it waits for it to come back instead of exiting: the
runs it was driving are in Postgres, and the scheduler re-enqueues the jobs Redis lost."""

from __future__ import annotations

import random
import time

from redis import Redis
from redis.exceptions import RedisError

from tracing.platform.logs import get_logger

log = get_logger(__name__)

FIRST_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 10.0


def redis_wait(*, connection: Redis, process: str) -> None:
    """Block until Redis answers a PING, retrying with capped exponential backoff and jitter."""
    delay = FIRST_DELAY_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            connection.ping()
        except RedisError as exc:
            pause = random.uniform(delay / 2, delay)
            log.warning(
                "redis.unavailable",
                process=process,
                attempt=attempt,
                retry_in_s=round(pause, 2),
                error=f"{type(exc).__name__}: {exc}",
            )
            time.sleep(pause)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
            continue
        if attempt > 1:
            log.info("redis.back", process=process, attempts=attempt)
        return
