"""Routing a session's first message before any model call (issue 24): by a rule on the widget
key the conversation came through, and by one classifier model call whose verdict is
validated. Real processes: a worker, the real openai client, the dev model over HTTP (a
router's verdict: the first listed agent whose description shares a word with the message;
`[[malformed]]` / `[[invalid]]` in a description script a bad one), whose request log shows
every call in order."""

import pytest

from agentops.agent_config import transfers_validate
from agentops.agents.services import agent_version_create
from agentops.models import Agent, Message, Role, Run, RunStatus
from agentops.runtime.services import session_create, session_post_message
from agentops.widget.services import (
    enduser_from_token,
    enduser_message_post,
    enduser_token_issue,
    widget_key_create,
)
from tests.agentops.runtime.helpers import spans, wait_for_run
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)

BILLING = {"agent": "billing", "description": "Billing: refunds and invoices"}
TECH = {"agent": "tech", "description": "Tech support: login and password problems"}
ROUTER = "You are a router"


def published(agent: Agent, **fields: object) -> Agent:
    if "transfers" in fields:
        fields["transfers"] = transfers_validate(value=fields["transfers"], agent_slug=agent.slug)
    for name, value in fields.items():
        setattr(agent, name, value)
    agent.save()
    agent_version_create(agent=agent, author=None, publish=True)
    agent.refresh_from_db()
    return agent


@pytest.fixture
def specialists(dev_agent: Agent) -> None:
    for slug in ("billing", "tech"):
        published(AgentFactory(slug=slug, name=slug.title(), endpoint=dev_agent.endpoint))


def triage(dev_agent: Agent, *transfers: dict) -> Agent:
    return published(dev_agent, slug="triage", name="Triage", transfers=list(transfers))


def turn(first_run_id: object) -> list[Run]:
    """The runs of the turn, first to last, each ended."""
    runs = [wait_for_run(first_run_id)]
    while (nxt := Run.objects.filter(transferred_from=runs[-1]).first()) is not None:
        runs.append(wait_for_run(nxt.pk))
    return runs


def system_of(request: dict) -> str:
    messages = request["body"]["messages"]
    return messages[0]["content"] if messages[0]["role"] == "system" else ""


def test_it_routes_by_the_widget_key_a_conversation_came_through(
    worker, dev_agent, specialists, devmodel, model_name
):
    shop, _ = widget_key_create(
        agent=dev_agent, name="shop", allowed_origins=["https://shop.example"], actor=None
    )
    docs, _ = widget_key_create(
        agent=dev_agent, name="docs", allowed_origins=["https://docs.example"], actor=None
    )
    triage(dev_agent, {**BILLING, "when": {"widget_key": shop.public_key}})

    def post(key, visitor: str) -> list[Run]:
        enduser, _ = enduser_from_token(
            token=enduser_token_issue(key=key, identity=f"visitor:{visitor}")
        )
        session = enduser_message_post(
            key=key, enduser=enduser, content="hello there", address="127.0.0.1"
        )
        return turn(Run.objects.get(session=session).pk)

    routed = post(shop, "v1")
    assert [r.agent.slug for r in routed] == ["triage", "billing"]
    assert all(r.status == RunStatus.SUCCEEDED for r in routed), routed[-1].error_message
    assert routed[0].model_calls == 0
    (transfer,) = spans(routed[0].pk, "transfer")
    assert transfer.attributes["reason"].startswith("routed by rule")

    kept = post(docs, "v2")
    assert [r.agent.slug for r in kept] == ["triage"]
    assert kept[0].status == RunStatus.SUCCEEDED, kept[0].error_message
    # Only the agent that answered was asked, once each: a rule costs no model call.
    assert [system_of(r).startswith(ROUTER) for r in devmodel.requests(model_name)] == [
        False,
        False,
    ]


def test_a_classifier_call_routes_a_refund_to_billing_before_billing_answers(
    worker, dev_agent, specialists, devmodel, model_name
):
    classify = {"when": {"classify": True}}
    agent = triage(dev_agent, {**TECH, **classify}, {**BILLING, **classify})
    session = session_create(agent=agent, external_user="erin")
    runs = turn(session_post_message(session=session, content="I want a refund please").pk)
    assert [r.agent.slug for r in runs] == ["triage", "billing"]
    assert all(r.status == RunStatus.SUCCEEDED for r in runs), runs[-1].error_message
    assert runs[0].model_calls == 0  # triage's own model was never asked to answer

    # Exactly one classifier call, over both candidates, ended before billing's call began.
    router, answer = devmodel.requests(model_name)
    assert system_of(router).startswith(ROUTER)
    assert "- tech: Tech support" in system_of(router)
    assert "- billing: Billing" in system_of(router)
    assert not system_of(answer).startswith(ROUTER)
    assert answer["body"]["messages"][-1]["content"] == "I want a refund please"
    assert router["ended"] <= answer["at"]

    (route,) = spans(runs[0].pk, "route")
    assert (route.attributes["route.by"], route.attributes["route.choice"]) == (
        "classifier",
        "billing",
    )
    assert route.attributes["route.candidates"] == ["tech", "billing"]
    (call,) = spans(runs[0].pk, "model.call")
    assert call.parent_span_id == route.span_id and call.attributes["purpose"] == "route"
    (transfer,) = spans(runs[0].pk, "transfer")
    assert transfer.attributes["reason"].startswith("routed by classifier")
    reply = Message.objects.get(session=session, role=Role.ASSISTANT)
    assert (reply.agent.slug, reply.content) == ("billing", "You said: I want a refund please")


def test_rules_route_first_and_spare_the_classifier_call(
    worker, dev_agent, specialists, devmodel, model_name
):
    agent = triage(
        dev_agent,
        {**BILLING, "when": {"classify": True}},
        {**TECH, "when": {"pattern": "(?i)password"}},
    )
    session = session_create(agent=agent, external_user="erin")
    runs = turn(session_post_message(session=session, content="password refund").pk)
    assert [r.agent.slug for r in runs] == ["triage", "tech"]
    assert spans(runs[0].pk, "route") == []
    assert [system_of(r).startswith(ROUTER) for r in devmodel.requests(model_name)] == [False]


@pytest.mark.parametrize(
    ("marker", "error"),
    [
        ("", None),
        ("[[malformed]]", "the routing verdict is not JSON"),
        ("[[invalid]]", "the routing verdict is malformed (agent:"),
    ],
)
def test_no_verdict_or_a_bad_one_leaves_the_message_with_triage(
    worker, dev_agent, specialists, devmodel, model_name, marker, error
):
    billing = {**BILLING, "description": f"{BILLING['description']} {marker}".strip()}
    agent = triage(dev_agent, {**billing, "when": {"classify": True}})
    session = session_create(agent=agent, external_user="erin")
    runs = turn(session_post_message(session=session, content="hello there").pk)
    assert [r.agent.slug for r in runs] == ["triage"]
    assert runs[0].status == RunStatus.SUCCEEDED, runs[0].error_message
    reply = Message.objects.get(session=session, role=Role.ASSISTANT)
    assert (reply.agent.slug, reply.content) == ("triage", "You said: hello there")

    (route,) = spans(runs[0].pk, "route")
    assert route.attributes["route.choice"] == "none"
    invalid = spans(runs[0].pk, "route.invalid")
    if error is None:
        assert invalid == []
    else:
        (event,) = invalid
        assert event.parent_span_id == route.span_id
        assert event.attributes["error"].startswith(error), event.attributes
    assert spans(runs[0].pk, "transfer") == []
    assert [system_of(r).startswith(ROUTER) for r in devmodel.requests(model_name)] == [
        True,
        False,
    ]
