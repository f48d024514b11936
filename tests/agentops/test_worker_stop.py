"""A worker asked to stop (SIGTERM) ends by itself: a module of its own, so that no other
worker takes the run its worker must have served."""

from __future__ import annotations

import signal

import pytest

from agentops.models import RunStatus
from agentops.runtime.services import session_create, session_post_message
from agentops.testing.processes import CONCURRENT_WORKER, FORKING_WORKER
from tests.agentops.runtime.helpers import wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("worker_class", [FORKING_WORKER, CONCURRENT_WORKER])
def test_it_exits_by_itself_soon_after_sigterm_once_it_has_run_a_job(
    workers, dev_agent, worker_class
):
    """RQ's teardown joined the command listener, which waits out a 60 s poll: a stopped
    worker lingered a minute (and was killed by whoever stopped it)."""
    proc = workers.start(name="sigterm", worker_class=worker_class)
    session = session_create(agent=dev_agent, external_user="erin")
    run = session_post_message(session=session, content="hello")
    assert wait_for_run(run.pk).status == RunStatus.SUCCEEDED
    proc.popen.send_signal(signal.SIGTERM)
    # A bound far above a clean exit (well under a second) and below the 60 s poll.
    assert proc.popen.wait(timeout=20) == 0
