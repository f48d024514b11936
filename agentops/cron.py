"""Periodic jobs, enqueued by `python manage.py scheduler` (RQ's cron scheduler) on
MAINTENANCE_QUEUE.

The lower apps' and the runtime's are listed here; each feature above the runtime (the inbox,
the webhooks, the experiments) registers its own in its AppConfig.ready() through
agentops.hooks.periodic_job_register, and they are added below. The run reconciler is not
here: the scheduler runs it inline every second.
"""

from django.conf import settings
from rq import cron

from agentops import jobs as agentops_jobs
from agentops.hooks import PeriodicJob, periodic_jobs
from knowledge import jobs as knowledge_jobs
from memory import jobs as memory_jobs
from tracing import jobs as tracing_jobs

SCHEDULE = [
    PeriodicJob(func=tracing_jobs.rollup_metrics, interval=30, job_timeout=300, ttl=60),
    PeriodicJob(func=tracing_jobs.retention_purge, interval=3600, job_timeout=3000, ttl=600),
    PeriodicJob(func=tracing_jobs.alerts_evaluate, interval=60, job_timeout=120, ttl=60),
    PeriodicJob(func=memory_jobs.memory_expire_job, interval=600, job_timeout=600, ttl=600),
    PeriodicJob(func=memory_jobs.memories_embed_missing_job, interval=60, job_timeout=300, ttl=60),
    PeriodicJob(func=agentops_jobs.breaker_window_prune_job, interval=60, job_timeout=120, ttl=60),
    PeriodicJob(func=knowledge_jobs.sources_resume_job, interval=60, job_timeout=120, ttl=60),
    PeriodicJob(
        func=knowledge_jobs.sources_recrawl_due_job, interval=300, job_timeout=120, ttl=300
    ),
]

for job in [*SCHEDULE, *periodic_jobs()]:
    cron.register(
        job.func,
        queue_name=settings.MAINTENANCE_QUEUE,
        interval=job.interval,
        job_timeout=job.job_timeout,
        ttl=job.ttl,
    )
