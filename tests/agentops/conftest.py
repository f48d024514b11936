from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import psutil
import pytest
from rq.worker import Worker

from tests.kit import until

PACKAGE_WAIT_SECONDS = 20


@pytest.fixture
def services_folder(monkeypatch) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """An empty data folder for embedded services of a test's own. Not under pytest's tmp_path:
    Postgres runs as another user, and every pytest session makes its base folder private."""
    folder = Path(tempfile.mkdtemp(prefix="svc-", dir=os.environ["AGENTOPS_VAR_DIR"])) / "v"
    monkeypatch.setenv("AGENTOPS_VAR_DIR", str(folder))
    yield folder
    shutil.rmtree(folder.parent, ignore_errors=True)


@pytest.fixture
def tooled_agent(dev_agent):  # type: ignore[no-untyped-def]
    """The dev agent with the test tools and room for ten steps: the agent the crash, outage
    and concurrency tests drive through real workers."""
    from tests.agentops.runtime.helpers import agent_with_python_tools

    return agent_with_python_tools(dev_agent, max_steps=10)


def _running(pid: int | None) -> bool:
    """A test's workers run on this machine: a killed one still has a fresh heartbeat."""
    try:
        return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _package_being_written() -> bool:
    """Some handoff's package job runs, or waits for a worker that is there to take it."""
    import django_rq
    from django.conf import settings
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    from agentops.health import live_worker_names
    from agentops.models import Handoff
    from agentops.runtime.handoff_package import handoff_package_job_id

    queue = django_rq.get_queue(settings.RUN_QUEUE)
    live = set(live_worker_names(redis=queue.connection))
    taken_up = any(
        worker.name in live and queue.name in worker.queue_names() and _running(worker.pid)
        for worker in Worker.all(connection=queue.connection)
    )
    for handoff_id in Handoff.objects.filter(summary="").values_list("pk", flat=True):
        try:
            job = Job.fetch(handoff_package_job_id(handoff_id), connection=queue.connection)
        except NoSuchJobError:
            continue
        status = job.get_status()
        if status == JobStatus.STARTED or (status == JobStatus.QUEUED and taken_up):
            return True
    return False


@pytest.fixture(autouse=True)
def _handoff_packages_written(request: pytest.FixtureRequest) -> Iterator[None]:
    """A handoff's package is written by a job of its own after the run ends; a test must not
    end while that job still writes, or the database flush that follows it deadlocks."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    if not transactional:
        yield
        return
    # The database fixture is set up first, so it is torn down (flushed) after this wait.
    request.getfixturevalue("_django_db_helper" if marker else "transactional_db")
    yield
    with suppress(AssertionError):  # at most that long
        until(lambda: not _package_being_written(), seconds=PACKAGE_WAIT_SECONDS)
