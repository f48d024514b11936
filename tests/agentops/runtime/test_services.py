"""Entry points into the runtime: retrying a run answers the run's own message."""

import pytest

from agentops.models import Message, Role, RunStatus, Session
from agentops.runtime.services import (
    RuntimeConflict,
    run_retry,
    session_create,
    session_post_message,
)
from tests.agentops.runtime.helpers import wait_for_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(dev_agent):
    return session_create(agent=dev_agent, external_user="erin")


def failed_then_newer_turn(session, devmodel, model_name):
    devmodel.script(model_name, [{"status": 400}])
    first = wait_for_run(session_post_message(session=session, content="question A").pk)
    assert first.status == RunStatus.FAILED
    second = wait_for_run(session_post_message(session=session, content="question B").pk)
    assert second.status == RunStatus.SUCCEEDED
    return first


def test_it_answers_a_retried_run_in_place_after_newer_turns(worker, session, devmodel, model_name):
    first = failed_then_newer_turn(session, devmodel, model_name)
    run_retry(run=first)
    first = wait_for_run(first.pk)
    assert first.status == RunStatus.SUCCEEDED, first.error_message
    answers = Message.objects.filter(session=session, role=Role.ASSISTANT).order_by("seq")
    assert [(m.content, m.run_id) for m in answers] == [
        ("You said: question B", answers[0].run_id),
        ("You said: question A", first.pk),
    ]
    seen = devmodel.requests(model_name)[-1]["transcript"]
    assert seen[-1] == ["user", "question A"]
    assert not any("question B" in text for _, text in seen)  # the conversation as it stood


def test_it_refuses_a_retry_whose_message_was_folded_into_the_summary(
    worker, session, devmodel, model_name
):
    first = failed_then_newer_turn(session, devmodel, model_name)
    newest = Message.objects.filter(session=session).order_by("-seq").first()
    Session.objects.filter(pk=session.pk).update(summary="...", summary_upto_seq=newest.seq)
    with pytest.raises(RuntimeConflict, match="folded into the conversation's summary"):
        run_retry(run=first)
    first.refresh_from_db()
    assert first.status == RunStatus.FAILED
