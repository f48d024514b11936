"""The forking worker lends its one database connection to each work horse in turn."""

from __future__ import annotations

import os
import signal

import django_rq
import pytest
from django.db import connection
from rq.job import Job, JobStatus

from agentops.models import Message, Role, RunStatus
from agentops.runtime.services import session_create, session_post_message
from agentops.testing.processes import (
    child_env,
    postgres_end_backends,
    postgres_full,
    start_scheduler,
)
from tests.agentops.runtime.helpers import (
    agent_with_python_tools,
    side_effects_forget,
    wait_for_run,
    wait_for_side_effects,
)
from tests.kit import until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def agent(dev_agent):
    return agent_with_python_tools(dev_agent)


def backend_of_a_run(agent) -> int:
    """Run a job that reports the Postgres backend serving it."""
    session = session_create(agent=agent, external_user="erin")
    run = session_post_message(session=session, content="call database_backend {}")
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    return int(Message.objects.get(session=session, role=Role.TOOL).content)


def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1


def test_it_serves_consecutive_work_horses_from_one_backend(worker, agent):
    first, second = backend_of_a_run(agent), backend_of_a_run(agent)
    assert first == second
    assert backend_alive(first)


def test_it_drops_the_connection_of_a_killed_work_horse(worker, agent):
    lent = backend_of_a_run(agent)
    side_effects_forget()
    session = session_create(agent=agent, external_user="frank")
    run = session_post_message(
        session=session, content='call side_effect {"label": "k", "seconds": 30}'
    )
    wait_for_side_effects()  # the horse is inside the tool
    run.refresh_from_db()
    horse = int(run.worker.rsplit(":", 1)[1])
    os.kill(horse, signal.SIGKILL)
    until(
        lambda: not backend_alive(lent),
        seconds=10,
        message="the parent closed its copy of the killed horse's connection",
    )
    assert backend_of_a_run(agent) != lent  # the next horse gets a fresh, working connection


@pytest.mark.slow
def test_it_survives_a_postgres_that_refuses_it_and_runs_the_job_later(worker, agent):
    session = session_create(agent=agent, external_user="gina")
    queue = django_rq.get_queue("runs")
    postgres_end_backends()  # the worker has no connection left to lend
    with postgres_full():
        run = session_post_message(session=session, content="hello")
        run.refresh_from_db()
        job = Job.fetch(run.job_id, connection=queue.connection)
        # The worker took the job and could not connect (or died, which the assert below shows).
        until(lambda: not worker.alive() or job.get_status(refresh=True) == JobStatus.FAILED)
    assert worker.alive(), worker.output()[-2000:]
    scheduler = start_scheduler(child_env(RUN_LOST_JOB_SECONDS="2"))
    try:
        assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED  # re-enqueued, then run
    finally:
        scheduler.stop()
