"""Transfers between agents on real runs: a real worker process, the real openai client, the
dev model over HTTP (which transfers when a transfer tool's description shares a word with the
message, and whose request log shows what each agent was sent)."""

import json

import pytest

from agentops.agent_config import transfers_validate
from agentops.agents.services import agent_version_create
from agentops.models import Agent, Handoff, Message, Role, Run, RunStatus, Session, Team
from agentops.runtime.services import session_create, session_post_message
from agentops.runtime.transfers import MAX_PER_TURN
from tests.agentops.runtime.helpers import spans, wait_for_run
from tests.factories import AgentFactory
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


def published(agent: Agent, **fields) -> Agent:
    if "transfers" in fields:
        fields["transfers"] = transfers_validate(value=fields["transfers"], agent_slug=agent.slug)
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.save()
    agent_version_create(agent=agent, author=None, publish=True)
    agent.refresh_from_db()
    return agent


@pytest.fixture
def billing(dev_agent):
    python_tools_sync()  # the built-in tools (handoff_to_human) as rows
    team = Team.objects.create(slug="billing-desk", name="Billing desk")
    return published(
        AgentFactory(slug="billing", name="Billing", endpoint=dev_agent.endpoint),
        handoff_team=team,
    )


def triage(dev_agent, history: str = "all", **entry) -> Agent:
    transfer = {
        "agent": "billing",
        "description": "Billing: refunds and invoices",
        "history": history,
    }
    return published(dev_agent, slug="triage", name="Triage", transfers=[{**transfer, **entry}])


def chain_of(run: Run) -> list[Run]:
    """The runs of the turn, first to last (each transferred from the one before)."""
    runs = [run]
    while (nxt := Run.objects.filter(transferred_from=runs[-1]).first()) is not None:
        runs.append(wait_for_run(nxt.pk))
    return runs


# Driven in the test's own process (no worker may take their runs): before the module's
# first test that starts one.
def test_a_target_run_cancelled_before_it_starts_is_not_driven(
    dev_agent, billing, devmodel, model_name
):
    """Cancelled in the instant between its transfer and its start in the same job: the job
    leaves it cancelled, never asking the model for it nor saying it runs."""
    import django_rq
    from django.conf import settings

    from agentops import hooks
    from agentops.hooks import event_subscribe
    from agentops.runtime.loop import run_execute
    from agentops.runtime.services import run_cancel

    session = session_create(agent=triage(dev_agent), external_user="erin")
    heard: list[tuple[str, str]] = []

    def on_status(event):
        run = event.run
        heard.append((str(run.pk), event.data.get("status")))
        if event.data.get("status") == RunStatus.SUCCEEDED and run.wait_reason.startswith(
            "transferred"
        ):
            transaction_on_commit(lambda: run_cancel(run=Run.objects.get(transferred_from=run)))

    from django.db.transaction import on_commit as transaction_on_commit

    event_subscribe(kinds=["run.status"], handler=on_status)
    try:
        run = session_post_message(session=session, content="I want a refund please")
        django_rq.get_queue(settings.RUN_QUEUE).empty()  # driven here
        run_execute(run_id=run.pk)
    finally:
        hooks._subscribers["run.status"].remove(on_status)
    target = Run.objects.get(transferred_from=run)
    assert target.status == RunStatus.CANCELLED
    assert not spans(target.pk, "model.call")
    assert len(devmodel.requests(model_name)) == 1  # triage's call only
    assert [s for r, s in heard if r == str(target.pk)] == [RunStatus.CANCELLED]


def test_two_transfers_at_once_keep_the_targets_limit(dev_agent, billing, monkeypatch):
    """Both pass the transfer's limit check before either commits: under the target's row
    lock the second target run waits for a slot (queued), and runs once the first ends."""
    import threading

    from django.db import connection

    from agentops.runtime import loop, transfers

    billing.max_concurrent_runs = 1
    billing.save(update_fields=["max_concurrent_runs"])
    barrier = threading.Barrier(2, timeout=30)

    def after_both_checked(**kwargs):
        barrier.wait()
        return transfers.transfer_perform(**kwargs)

    monkeypatch.setattr(loop, "transfer_perform", after_both_checked)
    agent = triage(dev_agent, when={"pattern": "refund"})
    runs = [
        session_post_message(
            session=session_create(agent=agent, external_user=user), content="a refund please"
        )
        for user in ("erin", "fred")
    ]
    import django_rq
    from django.conf import settings

    django_rq.get_queue(settings.RUN_QUEUE).empty()  # driven here, in two threads

    def drive(run):
        try:
            loop.run_execute(run_id=run.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=drive, args=(r,)) for r in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    targets = [Run.objects.get(transferred_from=r) for r in runs]
    # One answered in its transfer's job (these ran with no job id); the other waited for
    # the slot and was sent to the queue once the first ended (a job id of its own).
    assert sorted(t.job_id == "" for t in targets) == [False, True]
    driven = next(t for t in targets if t.job_id == "")
    assert driven.status == RunStatus.SUCCEEDED
    django_rq.get_queue(settings.RUN_QUEUE).empty()


def test_it_transfers_a_refund_to_billing_who_answers_and_takes_the_conversation(
    worker, dev_agent, billing, devmodel, model_name
):
    session = session_create(agent=triage(dev_agent), external_user="erin")
    first = wait_for_run(session_post_message(session=session, content="I want a refund please").pk)
    assert (first.status, first.wait_reason) == (RunStatus.SUCCEEDED, "transferred to billing")
    _, second = chain_of(first)
    assert second.status == RunStatus.SUCCEEDED, second.error_message
    assert (second.agent, second.trigger_id) == (billing, first.trigger_id)
    # Billing answered in triage's job, held by it from the transfer: no queue between them.
    assert (second.job_id, second.epoch, second.jobs_started) == (first.job_id, 1, 1)
    assert Session.objects.get(pk=session.pk).agent == billing
    messages = list(Message.objects.filter(session=session).order_by("seq"))
    assert [(m.role, m.agent.slug if m.agent else None) for m in messages] == [
        (Role.USER, None),
        (Role.ASSISTANT, "triage"),
        (Role.TOOL, None),
        (Role.ASSISTANT, "billing"),
    ]
    assert messages[1].tool_calls[0]["function"]["name"] == "transfer_to_billing"
    assert messages[-1].content == "You said: I want a refund please"
    (transfer,) = spans(first.pk, "transfer")
    assert (transfer.attributes["transfer.from"], transfer.attributes["transfer.to"]) == (
        "triage",
        "billing",
    )
    # Billing saw the conversation without the transfer plumbing, and no transfer tool of its own.
    (request,) = [
        r for r in devmodel.requests(model_name) if r["body"]["messages"][-1]["role"] == "user"
    ][-1:]
    assert "transfer_to_billing" not in json.dumps(request["body"]["messages"])
    # The next message goes to billing; its handoff goes to billing's team.
    run = wait_for_run(session_post_message(session=session, content="I need a human").pk)
    assert (run.agent, run.status) == (billing, RunStatus.HANDED_OFF)
    assert Handoff.objects.get(session=session).team.slug == "billing-desk"


def test_it_shows_which_agent_spoke_in_the_api(worker, dev_agent, billing, client, alice):
    from agentops.auth import api_key_create

    session = session_create(agent=triage(dev_agent), external_user="erin")
    chain_of(wait_for_run(session_post_message(session=session, content="refund my order").pk))
    token = api_key_create(user=alice, name="t")[1]
    body = client.get(
        f"/api/sessions/{session.pk}/messages", HTTP_AUTHORIZATION=f"Bearer {token}"
    ).json()
    spoke = [(m["role"], (m["agent"] or {}).get("name")) for m in body["messages"]]
    assert spoke == [
        ("user", None),
        ("assistant", "Triage"),
        ("tool", None),
        ("assistant", "Billing"),
    ]


@pytest.mark.parametrize(("history", "sees_earlier", "summary"), [("all", True, False), ("last_n", False, False), ("summary", False, True)])  # fmt: skip
def test_it_gives_the_target_the_history_its_transfer_says(
    worker, dev_agent, billing, devmodel, model_name, history, sees_earlier, summary
):
    agent = triage(dev_agent, history, **({"turns": 1} if history == "last_n" else {}))
    session = session_create(agent=agent, external_user="erin")
    wait_for_run(session_post_message(session=session, content="hello there").pk)
    chain_of(wait_for_run(session_post_message(session=session, content="a refund, please").pk))
    sent = [r["body"]["messages"] for r in devmodel.requests(model_name)]
    to_billing = [m for m in sent if m[0]["content"].startswith("You are a test agent.")][-1]
    assert any(m["content"] == "hello there" for m in to_billing) is sees_earlier
    assert ("Summary of the earlier conversation" in json.dumps(to_billing)) is summary
    assert to_billing[-1]["content"] == "a refund, please"


def test_it_tells_the_model_when_the_target_cannot_take_it(worker, dev_agent):
    AgentFactory(slug="billing", endpoint=dev_agent.endpoint)  # never published
    session = session_create(agent=triage(dev_agent), external_user="erin")
    run = wait_for_run(session_post_message(session=session, content="refund please").pk)
    assert run.status == RunStatus.SUCCEEDED and not Run.objects.filter(transferred_from=run)
    result = Message.objects.get(session=session, role=Role.TOOL)
    assert result.content.startswith("Error: the agent billing is not published")
    assert Session.objects.get(pk=session.pk).agent == dev_agent


def test_it_bounds_a_loop_of_transfers(worker, dev_agent):
    ping = AgentFactory(slug="ping", endpoint=dev_agent.endpoint)
    pong = AgentFactory(slug="pong", endpoint=dev_agent.endpoint)
    published(ping, transfers=[{"agent": "pong", "description": "anything about refunds"}])
    published(pong, transfers=[{"agent": "ping", "description": "anything about refunds"}])
    session = session_create(agent=ping, external_user="erin")
    runs = chain_of(wait_for_run(session_post_message(session=session, content="refunds!").pk))
    assert len(runs) == MAX_PER_TURN + 1
    assert all(r.status == RunStatus.SUCCEEDED for r in runs)
    last = Message.objects.filter(session=session, role=Role.TOOL).order_by("-seq").first()
    assert last.content.startswith(f"Error: this message was transferred {MAX_PER_TURN} times")


@pytest.mark.parametrize(
    ("when", "user", "content", "routed"),
    [
        ({"pattern": "(?i)invoice"}, "erin", "where is my invoice?", True),
        ({"pattern": "(?i)invoice"}, "erin", "hello there", False),
        ({"end_user": "^vip-"}, "vip-42", "hello there", True),
        ({"pattern": "(?i)bill", "end_user": "^vip-"}, "erin", "my bill", False),
    ],
)
def test_it_routes_a_first_message_by_rule_before_any_model_call(
    worker, dev_agent, billing, devmodel, model_name, when, user, content, routed
):
    session = session_create(agent=triage(dev_agent, when=when), external_user=user)
    first = wait_for_run(session_post_message(session=session, content=content).pk)
    runs = chain_of(first)
    assert [r.agent.slug for r in runs] == (["triage", "billing"] if routed else ["triage"])
    assert first.model_calls == (0 if routed else 1)
    assert len(devmodel.requests(model_name)) == 1  # only the agent that answered was asked
    assert all(r.status == RunStatus.SUCCEEDED for r in runs)
    if routed:
        assert spans(first.pk, "transfer")[0].attributes["reason"].startswith("routed by rule")


def test_the_demo_front_desk_passes_a_refund_to_billing_and_a_login_problem_to_tech_support(
    worker, devmodel
):
    from io import StringIO

    from django.core.management import call_command

    call_command("seed_demo", stdout=StringIO())
    call_command("seed_demo", stdout=StringIO())  # again: nothing changes
    triage_agent = Agent.objects.get(slug="triage")
    assert triage_agent.published_version.number == 1
    assert [t["agent"] for t in triage_agent.published_version.config["transfers"]] == [
        "billing",
        "tech-support",
    ]
    triage_agent.endpoint.base_url = devmodel.url  # the seeded endpoint, on this test's server
    triage_agent.endpoint.save()
    for content, specialist in [
        ("I was charged twice, I want a refund", "billing"),
        ("my password reset link gives an error", "tech-support"),
    ]:
        session = session_create(agent=triage_agent, external_user="erin")
        runs = chain_of(wait_for_run(session_post_message(session=session, content=content).pk))
        assert [r.agent.slug for r in runs] == ["triage", specialist], content


def test_the_turns_budget_reservation_goes_on_with_the_transfer(worker, dev_agent, billing):
    from agentops.budgets.models import Budget, BudgetHold, BudgetUsage
    from tests.kit import until

    Budget.objects.create(
        name="erin-day",
        scope="end_user",
        subject="erin",
        metric="tokens",
        period="day",
        limit=10**6,
    )
    session = session_create(agent=triage(dev_agent), external_user="erin")
    runs = chain_of(wait_for_run(session_post_message(session=session, content="a refund").pk))
    assert [r.agent.slug for r in runs] == ["triage", "billing"]
    until(lambda: not BudgetHold.objects.exists(), message="the turn's holds were not released")
    usage = BudgetUsage.objects.get()
    spent = sum(r.tokens_in + r.tokens_out for r in runs)
    assert runs[1].tokens_in > 0 and (usage.used, usage.reserved) == (spent, 0)


def test_a_transfer_answered_but_not_carried_out_is_carried_out_on_resume(
    worker, dev_agent, billing
):
    """The worker died between the transfer call's answer and the transfer: on resume the run
    transfers rather than answering itself under a false 'transferred'."""
    from agentops.runtime.checkpoint import messages_append
    from agentops.runtime.services import run_enqueue

    agent = triage(dev_agent)
    session = session_create(agent=agent, external_user="erin")
    (user,) = messages_append(
        session_id=session.pk, messages=[Message(role=Role.USER, content="refund", token_count=3)]
    )
    run = Run.objects.create(
        session=session, agent=agent, agent_version=agent.published_version, trigger=user
    )
    call = {
        "id": "call_t",
        "type": "function",
        "function": {"name": "transfer_to_billing", "arguments": "{}"},
    }
    messages_append(
        session_id=session.pk,
        messages=[
            Message(role=Role.ASSISTANT, tool_calls=[call], run=run, step=1, token_count=9),
            Message(
                role=Role.TOOL,
                tool_call_id="call_t",
                name="transfer_to_billing",
                content="Transferred to Billing: the conversation is theirs from here.",
                run=run,
                step=2,
                token_count=9,
            ),
        ],
    )
    Run.objects.filter(pk=run.pk).update(step=2, model_calls=1, jobs_started=1)  # as it died
    run_enqueue(run=run)
    first, second = chain_of(wait_for_run(run.pk))
    assert (first.status, first.wait_reason) == (RunStatus.SUCCEEDED, "transferred to billing")
    assert first.model_calls == 1  # it did not answer itself
    assert second.agent == billing and second.status == RunStatus.SUCCEEDED


def test_a_takeover_asked_as_the_transfer_is_stored_stops_it_whole(dev_agent, billing):
    """The operator's takeover lands after the run read its state and before the transfer's
    one fenced step: nothing of the transfer stays (no target run, the conversation still
    triage's), the transfer call is answered "not run", and the operator has the handoff."""
    from agentops.models import HandoffStatus
    from agentops.runtime.checkpoint import messages_append, run_claim
    from agentops.runtime.loop import RunDriver, heartbeat_thread
    from agentops.runtime.transfers import TransferRequired
    from tests.factories import UserFactory

    bob = UserFactory(username="bob", role="operator")
    agent = triage(dev_agent)
    session = session_create(agent=agent, external_user="erin")
    (user,) = messages_append(
        session_id=session.pk, messages=[Message(role=Role.USER, content="refund", token_count=3)]
    )
    run = Run.objects.create(
        session=session, agent=agent, agent_version=agent.published_version, trigger=user
    )
    epoch = run_claim(run_id=run.pk, worker="test")
    call = {
        "id": "call_t",
        "type": "function",
        "function": {"name": "transfer_to_billing", "arguments": "{}"},
    }
    messages_append(
        session_id=session.pk,
        messages=[Message(role=Role.ASSISTANT, tool_calls=[call], run=run, step=1, token_count=9)],
    )
    Run.objects.filter(pk=run.pk).update(step=1, model_calls=1)
    run = Run.objects.select_related("agent__endpoint", "session", "agent_version").get(pk=run.pk)
    beat = heartbeat_thread(run.pk, epoch)
    try:
        driver = RunDriver(run, epoch, beat)
        driver.start()
        Run.objects.filter(pk=run.pk).update(takeover_by=bob)  # after the run read its state
        with pytest.raises(TransferRequired) as transfer:
            driver.drive()
        assert driver.transfer(transfer.value) is None
    finally:
        beat.stop()
    run.refresh_from_db()
    assert (run.status, run.wait_reason) == (RunStatus.HANDED_OFF, "taken over by bob")
    assert not Run.objects.filter(transferred_from=run).exists()
    assert Session.objects.get(pk=session.pk).agent == agent
    answer = Message.objects.get(session=session, role=Role.TOOL)
    assert answer.content == "Not run: bob, a human operator, took the conversation over."
    handoff = Handoff.objects.get(session=session)
    assert handoff.claimed_by == bob and handoff.status == HandoffStatus.CLAIMED


def test_a_fork_at_the_transfer_answer_transfers_in_the_fork(worker, dev_agent, billing):
    """Forked at the step that answered the transfer call (the history copied ends with it,
    no target run of its own): the fork carries the transfer out rather than answering."""
    from agentops.runtime.services import run_fork

    session = session_create(agent=triage(dev_agent), external_user="erin")
    first = wait_for_run(session_post_message(session=session, content="I want a refund please").pk)
    chain_of(first)
    assert first.step == 2  # 1: the transfer call, 2: its answer
    fork = wait_for_run(run_fork(run=first, step=2).pk)
    assert (fork.status, fork.wait_reason) == (RunStatus.SUCCEEDED, "transferred to billing")
    assert fork.model_calls == 1  # copied: it did not ask the model again
    (_, target) = chain_of(fork)
    assert target.agent == billing and target.status == RunStatus.SUCCEEDED
