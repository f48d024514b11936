"""Retention: spans and rollups past their time are deleted in small independent batches, then
the other apps' registered hooks delete their own old rows. A scheduled job (tracing/jobs.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from tracing.models import MetricRollup, RetentionOverride, Span
from tracing.platform import conf
from tracing.platform.logs import get_logger

log = get_logger(__name__)


@dataclass
class RetentionPolicy:
    """Cut-off times: rows older than `cutoff_for(agent)` may be deleted."""

    default_cutoff: datetime
    agent_cutoffs: dict[str, datetime]
    batch_size: int

    def cutoff_for(self, agent: str) -> datetime:
        return self.agent_cutoffs.get(agent, self.default_cutoff)


RetentionHook = Callable[[RetentionPolicy], int]
_retention_hooks: dict[str, RetentionHook] = {}


def retention_hook_register(*, name: str, hook: RetentionHook) -> None:
    """Let another app delete its own old rows (tool calls, checkpoints) in the retention job.

    `hook(policy)` deletes in batches of `policy.batch_size` and returns how many rows went.
    """
    _retention_hooks[name] = hook


def retention_policy(*, now: datetime | None = None) -> RetentionPolicy:
    now = now or timezone.now()
    return RetentionPolicy(
        default_cutoff=now - timedelta(days=conf.trace_retention_days()),
        agent_cutoffs={
            o.agent: now - timedelta(days=o.days) for o in RetentionOverride.objects.all()
        },
        batch_size=conf.retention_batch_size(),
    )


def delete_in_batches(*, table: str, where: str, params: list[Any], batch_size: int) -> int:
    """DELETE matching rows `batch_size` at a time, each batch its own short transaction."""
    total = 0
    sql = f'DELETE FROM "{table}" WHERE id IN (SELECT id FROM "{table}" WHERE {where} LIMIT %s)'  # noqa: S608
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [*params, batch_size])
            deleted = cursor.rowcount
        total += deleted
        if deleted < batch_size:
            return total


def retention_purge(*, now: datetime | None = None) -> dict[str, int]:
    """Delete spans and rollups past their retention, then run the other apps' hooks."""
    now = now or timezone.now()
    policy = retention_policy(now=now)
    table = Span._meta.db_table
    spans = 0
    for agent, cutoff in policy.agent_cutoffs.items():
        spans += delete_in_batches(
            table=table,
            where="start_time < %s AND agent = %s",
            params=[cutoff, agent],
            batch_size=policy.batch_size,
        )
    spans += delete_in_batches(
        table=table,
        where="start_time < %s AND NOT (agent = ANY(%s))",
        params=[policy.default_cutoff, list(policy.agent_cutoffs)],
        batch_size=policy.batch_size,
    )
    rollups = delete_in_batches(
        table=MetricRollup._meta.db_table,
        where="bucket_seconds = 60 AND start < %s",
        params=[now - timedelta(days=conf.minute_rollup_retention_days())],
        batch_size=policy.batch_size,
    ) + delete_in_batches(
        table=MetricRollup._meta.db_table,
        where="bucket_seconds = 3600 AND start < %s",
        params=[now - timedelta(days=conf.hour_rollup_retention_days())],
        batch_size=policy.batch_size,
    )
    result = {"spans": spans, "rollups": rollups}
    failed = []
    for name, hook in _retention_hooks.items():
        try:
            result[name] = hook(policy)
        except Exception:
            log.exception("retention.hook_failed", hook=name)
            failed.append(name)
    log.info("tracing.retention", **result)
    if failed:
        raise RuntimeError(f"retention hooks failed: {', '.join(failed)} (see the log)")
    return result
