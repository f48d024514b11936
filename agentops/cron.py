"""The RQ scheduler's schedule (`python manage.py rqcron agentops.cron`)."""

from rq import cron

from agentops import jobs
from tracing import jobs as tracing_jobs

cron.register(jobs.runs_reconcile, queue_name="maintenance", interval=2, job_timeout=60)
cron.register(tracing_jobs.rollup_metrics, queue_name="maintenance", interval=30, job_timeout=300)
cron.register(tracing_jobs.retention_purge, queue_name="maintenance", interval=3600, job_timeout=3000)
