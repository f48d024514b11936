"""A handoff reaches the queue at once; its context package is written after, by a job."""

from datetime import timedelta

import django_rq
import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from rq.job import JobStatus

from agentops import embedded
from agentops.models import Handoff, Message, Role, RunStatus
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.handoff_package import handoff_package_enqueue, handoff_packages_reconcile
from agentops.runtime.services import runs_reconcile, session_create, session_post_message
from agentops.testing.processes import child_env, start_scheduler, start_worker
from tests.agentops.runtime.helpers import spans, wait_for_package, wait_for_run
from tests.agentops.test_redis_outage import kill_redis
from tests.kit import until
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(dev_agent):
    dev_agent.tools.add(*python_tools_sync())
    return session_create(agent=dev_agent, external_user="erin")


def test_it_hands_off_at_once_and_writes_the_package_after(
    worker, session, devmodel, model_name, client, bob
):
    devmodel.script(model_name, [{}, {"delay": 5}])  # the answer, then a slow summary call
    run = wait_for_run(session_post_message(session=session, content="a human please").pk)
    assert run.status == RunStatus.HANDED_OFF
    handoff = Handoff.objects.get(run=run)
    assert handoff.summary == "" and handoff.suggested_reply == ""  # not written yet
    assert [c["tool"] for c in handoff.last_tool_calls] == ["handoff_to_human"]
    client.force_login(bob)
    queue = client.get(reverse("operators:queue")).content.decode()
    assert "Being written…" in queue and "handoff.package" in queue
    url = reverse("operators:handoff", args=[handoff.pk])
    assert "Being written…" in client.get(url).content.decode()

    handoff = wait_for_package(handoff.pk)
    assert handoff.summary.startswith("Summary:") and handoff.suggested_reply
    package = client.get(url + "?part=package", HTTP_HX_REQUEST="true").content.decode()
    assert handoff.summary[:40] in package and "Being written" not in package
    assert "Being written" not in client.get(reverse("operators:queue")).content.decode()
    (span,) = spans(run.pk, "handoff.package")
    calls = [s for s in spans(run.pk, "model.call") if s.attributes["purpose"] == "handoff"]
    assert span.status == "ok" and len(calls) == 2


def test_it_leaves_a_note_when_the_model_cannot_write_the_package(
    worker, session, devmodel, model_name
):
    # The answer, then a 500 for every attempt the agent's retry policy allows, for the summary
    # and for the suggested reply: both go through the one guarded call, retried alike.
    attempts = session.agent.retry_max_attempts
    devmodel.script(model_name, [{}] + [{"status": 500}] * (2 * attempts))
    run = wait_for_run(session_post_message(session=session, content="a human please").pk)
    assert run.status == RunStatus.HANDED_OFF
    handoff = wait_for_package(Handoff.objects.get(run=run).pk)
    assert handoff.summary == "(No summary: the model failed with server_error.)"
    assert handoff.suggested_reply == ""

    def package_calls() -> list:
        return [s for s in spans(run.pk, "model.call") if s.attributes["purpose"] == "handoff"]

    # The job's spans are flushed after it wrote the package.
    until(lambda: len(package_calls()) >= 2 * attempts, seconds=10)
    assert [s.error_class for s in package_calls()] == ["server_error"] * (2 * attempts)
    assert len(spans(run.pk, "retry.wait")) == 2 * (attempts - 1)


def test_it_writes_the_package_of_a_handoff_whose_job_redis_never_got(
    worker, session, devmodel, model_name
):
    messages_append(
        session_id=session.pk, messages=[Message(role=Role.USER, content="a human please")]
    )
    # Committed while Redis was away: the handoff is stored, its package job never sent.
    handoff = Handoff.objects.create(session=session, reason="the user asked for a person")
    assert handoff_packages_reconcile(older_than=timedelta(seconds=60)) == 0  # not due yet
    assert handoff_packages_reconcile(older_than=timedelta(0)) == 1
    assert handoff_packages_reconcile(older_than=timedelta(0)) == 0  # its job now exists
    assert wait_for_package(handoff.pk).summary.startswith("Summary:")


@pytest.mark.timeout(300)
def test_it_writes_the_package_of_a_handoff_made_while_redis_was_away(
    session, devmodel, model_name
):
    """The whole way: a real worker hands the run off while Redis is down (so the package job
    is never sent); once Redis is back, the scheduler's sweep sends it and a worker writes it."""
    env = child_env(RUN_LOST_JOB_SECONDS="2")
    procs = [start_scheduler(env), start_worker(env, name="package-outage")]
    try:
        devmodel.script(model_name, [{"delay": 3}])  # time to take Redis away mid-run
        run = session_post_message(session=session, content="a human please")
        wait_for_run(run.pk, statuses=(RunStatus.RUNNING,))
        kill_redis()
        run = wait_for_run(run.pk)
        assert run.status == RunStatus.HANDED_OFF, run.error_message
        handoff = Handoff.objects.get(run=run)
        assert handoff.summary == ""
        embedded.start_redis()
        assert wait_for_package(handoff.pk, timeout=120).summary.startswith("Summary:")
    finally:
        for proc in procs:
            proc.stop()


def reconcile_later() -> dict[str, int]:
    """The scheduler's sweep, as it runs once the handoff is past RUN_LOST_JOB_SECONDS."""
    return runs_reconcile(now=timezone.now() + timedelta(seconds=settings.RUN_LOST_JOB_SECONDS + 1))


def test_it_replaces_a_package_job_that_is_not_the_handoffs(worker, session):
    """The database made again (restored, or a new one) while Redis kept its data: a finished
    job of an earlier handoff with the same id stood in for this one, and nothing wrote it."""
    messages_append(
        session_id=session.pk, messages=[Message(role=Role.USER, content="a human please")]
    )
    earlier = Handoff.objects.create(session=session, reason="the user asked for a person")
    handoff_package_enqueue(handoff_id=earlier.pk)
    wait_for_package(earlier.pk)  # its finished job stays in Redis for a while
    handoff_id = earlier.pk
    earlier.delete()
    handoff = Handoff.objects.create(pk=handoff_id, session=session, reason="once more")
    assert reconcile_later()["packages"] == 1
    assert wait_for_package(handoff.pk).summary.startswith("Summary:")
    assert reconcile_later()["packages"] == 0


def test_it_notes_a_package_whose_job_failed(worker, session):
    handoff = Handoff.objects.create(session=session, reason="the user asked for a person")
    # Its job died (a worker killed under it, say): RQ keeps it among the failed jobs.
    job = django_rq.get_queue("runs").enqueue(
        "agentops.jobs.handoff_package_job", "not an id", job_id=f"handoff-package-{handoff.pk}"
    )
    until(lambda: job.get_status() == JobStatus.FAILED)
    assert reconcile_later()["packages"] == 0  # not run again: it would fail again
    handoff.refresh_from_db()
    assert handoff.summary == "(No summary: the job writing it failed.)"
