"""Periodic jobs, enqueued by `python manage.py scheduler` (RQ's cron scheduler).

Register each with `cron.register(func, queue_name="maintenance", interval=..., job_timeout=..., ttl=...)`.
The run reconciler is not here: the scheduler runs it inline every second.
"""

from rq import cron

from agentops import jobs as agentops_jobs
from agentops.experiments import jobs as experiment_jobs
from agentops.webhooks import jobs as webhook_jobs
from memory import jobs as memory_jobs
from tracing import jobs as tracing_jobs

cron.register(
    tracing_jobs.rollup_metrics, queue_name="maintenance", interval=30, job_timeout=300, ttl=60
)
cron.register(
    tracing_jobs.retention_purge, queue_name="maintenance", interval=3600, job_timeout=3000, ttl=600
)
cron.register(
    tracing_jobs.alerts_evaluate, queue_name="maintenance", interval=60, job_timeout=120, ttl=60
)
cron.register(
    memory_jobs.memory_expire_job, queue_name="maintenance", interval=600, job_timeout=600, ttl=600
)
cron.register(
    memory_jobs.memories_embed_missing_job,
    queue_name="maintenance",
    interval=60,
    job_timeout=300,
    ttl=60,
)
cron.register(
    webhook_jobs.webhooks_dispatch_due_job,
    queue_name="maintenance",
    interval=5,
    job_timeout=60,
    ttl=10,
)
cron.register(
    agentops_jobs.handoffs_sweep_job, queue_name="maintenance", interval=10, job_timeout=60, ttl=20
)
cron.register(
    agentops_jobs.breaker_window_prune_job,
    queue_name="maintenance",
    interval=60,
    job_timeout=120,
    ttl=60,
)
cron.register(
    agentops_jobs.operators_away_job, queue_name="maintenance", interval=30, job_timeout=60, ttl=60
)
cron.register(
    agentops_jobs.handoffs_wake_job, queue_name="maintenance", interval=15, job_timeout=60, ttl=30
)
cron.register(
    experiment_jobs.experiments_reconcile_job,
    queue_name="maintenance",
    interval=30,
    job_timeout=120,
    ttl=60,
)
