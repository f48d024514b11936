"""The RQ scheduler's schedule (`python manage.py rqcron agentops.cron`)."""

from rq import cron

from agentops import jobs

cron.register(jobs.runs_reconcile, queue_name="maintenance", interval=2, job_timeout=60)
