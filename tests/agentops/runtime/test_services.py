"""Entry points into the runtime: retrying a run answers the run's own message."""

import pytest

from agentops.models import Message, Role, RunStatus, Session, SessionStatus
from agentops.runtime.services import (
    RuntimeConflict,
    run_cancel,
    run_retry,
    session_create,
    session_post_message,
)
from tests.agentops.runtime.helpers import wait_for_run
from tracing.platform.live import OPS_GROUP, capture_live_events, session_group

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


def kinds(sent):
    return [(group, event["kind"]) for group, event in sent]


def test_it_sends_a_posted_message_and_its_queued_run_to_the_session_and_ops(session):
    group = session_group(session.pk)
    with capture_live_events() as sent:
        run = session_post_message(session=session, content="hello")
    assert kinds(sent) == [(group, "message"), (group, "run.status"), (OPS_GROUP, "run.status")]
    assert sent[0][1]["message"]["content"] == "hello"
    assert sent[1][1] == sent[2][1]
    assert sent[1][1]["run_id"] == str(run.pk) and sent[1][1]["status"] == RunStatus.QUEUED

    with capture_live_events() as sent:
        run_cancel(run=run)
    assert kinds(sent) == [(group, "run.status"), (OPS_GROUP, "run.status")]
    assert {event["status"] for _, event in sent} == {RunStatus.CANCELLED}

    with capture_live_events() as sent, pytest.raises(RuntimeConflict):
        run_cancel(run=run)
    assert sent == []  # a refused cancel says nothing


def test_it_sends_a_message_to_a_handed_off_session_to_the_operators_only(session):
    Session.objects.filter(pk=session.pk).update(status=SessionStatus.HANDED_OFF)
    with capture_live_events() as sent:
        assert session_post_message(session=session, content="anyone there?") is None
    assert kinds(sent) == [(session_group(session.pk), "message"), (OPS_GROUP, "session.message")]
    assert sent[1][1] == {"kind": "session.message", "session_id": str(session.pk)}
