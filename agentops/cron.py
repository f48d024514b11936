"""Periodic jobs, enqueued by `python manage.py scheduler` (RQ's cron scheduler).

Register each with `cron.register(func, queue_name="maintenance", interval=..., job_timeout=..., ttl=...)`.
The run reconciler is not here: the scheduler runs it inline every second.
"""

from rq import cron

from tracing import jobs as tracing_jobs  # noqa: E402

cron.register(
    tracing_jobs.rollup_metrics, queue_name="maintenance", interval=30, job_timeout=300, ttl=60
)
cron.register(
    tracing_jobs.retention_purge, queue_name="maintenance", interval=3600, job_timeout=3000, ttl=600
)
