"""A worker asked to stop (SIGTERM) ends by itself: idle at once, busy once its runs in flight
are done. A module of its own, so that no other worker takes the run its worker must serve."""

from __future__ import annotations

import signal

import pytest
from rq.job import Job, JobStatus

from agentops.models import RunStatus
from agentops.runtime.services import session_create, session_post_message
from agentops.testing.processes import CONCURRENT_WORKER, FORKING_WORKER
from tests.agentops.runtime.helpers import wait_for_run
from tests.kit import until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("worker_class", [FORKING_WORKER, CONCURRENT_WORKER])
@pytest.mark.parametrize("when", ["idle", "busy"])
def test_it_exits_by_itself_soon_after_sigterm(
    workers, dev_agent, devmodel, model_name, worker_class, when
):
    """Idle: RQ's teardown joined the command listener, which waits out a 60 s poll. Busy (a
    run in flight, concurrent worker): RQ only marked the stop and its dequeue loop never
    looked at the mark, so the worker waited for a next job forever."""
    import django_rq
    from django.conf import settings

    proc = workers.start(name="sigterm", worker_class=worker_class)
    if when == "busy":
        devmodel.script(model_name, [{"delay": 2}])
    session = session_create(agent=dev_agent, external_user="erin")
    run = session_post_message(session=session, content="hello")
    if when == "busy":
        wait_for_run(run.pk, statuses={RunStatus.RUNNING})
    else:
        assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
        connection = django_rq.get_queue(settings.RUN_QUEUE).connection
        until(
            lambda: (
                Job.fetch(run.refresh_from_db() or run.job_id, connection=connection).get_status()
                == JobStatus.FINISHED
            ),
            message="the run's job never finished",
        )
    proc.popen.send_signal(signal.SIGTERM)
    # A bound far above a clean exit (the busy run needs ~2 s) and below the 60 s poll.
    assert proc.popen.wait(timeout=20) == 0
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED  # a warm stop lets it finish
