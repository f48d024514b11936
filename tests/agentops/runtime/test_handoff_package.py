"""A handoff reaches the queue at once; its context package is written after, by a job."""

from datetime import timedelta

import pytest
from django.urls import reverse

from agentops.models import Handoff, Message, Role, RunStatus
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.handoff_package import handoff_packages_reconcile
from agentops.runtime.services import session_create, session_post_message
from tests.agentops.runtime.helpers import spans, wait_for_package, wait_for_run
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
    devmodel.script(model_name, [{}, {"status": 500}, {"status": 500}])
    run = wait_for_run(session_post_message(session=session, content="a human please").pk)
    assert run.status == RunStatus.HANDED_OFF
    handoff = wait_for_package(Handoff.objects.get(run=run).pk)
    assert handoff.summary == "(No summary: the model failed with server_error.)"
    assert handoff.suggested_reply == ""


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
