"""Guardrails and transfers as configured: what each finder finds (and what it must not), the validation that
names the guardrail and its field, in the agents API and the builder, and the version diff."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from agentops.agents.services import agent_version_create
from agentops.auth import api_key_create
from agentops.guardrails.checks import findings, redact
from agentops.guardrails.spec import guardrails_validate
from agentops.models import AgentVersion
from tests.factories import AgentFactory

PII = {"kind": "pii", "entities": ["card", "iban", "email", "phone", "national_id"], "region": "US"}


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("card 4111 1111 1111 1111 ok", "card [card number] ok"),
        ("card 4111-1111-1111-1111", "card [card number]"),
        ("order 1234567890123456", "order 1234567890123456"),  # fails the Luhn check
        ("pay DE89 3704 0044 0532 0130 00 now", "pay [IBAN] now"),
        ("pay DE89 3704 0044 0532 0130 01 now", "pay DE89 3704 0044 0532 0130 01 now"),
        ("mail bob.smith+x@example.co.uk", "mail [e-mail address]"),
        ("call +44 20 7946 0958 today", "call [phone number] today"),
        ("ssn 123-45-6789", "ssn [national id]"),
        ("dni 12345678Z", "dni [national id]"),
        ("on 2026-12-07 it weighed 12.5 kg", "on 2026-12-07 it weighed 12.5 kg"),
    ],
)
def test_it_finds_pii_that_its_library_validates_and_nothing_else(text, redacted):
    assert redact(text, findings(PII, text)) == redacted


def test_it_matches_terms_as_whole_words_in_any_case():
    terms = {"kind": "terms", "terms": ["acme", "bad word"]}
    text = "Acme and acmefoo and a BAD WORD"
    assert redact(text, findings(terms, text)) == "[blocked term] and acmefoo and a [blocked term]"


def test_it_cleans_a_guardrail_and_fills_in_its_defaults():
    (clean,) = guardrails_validate(
        value=[{"name": "cards", "stage": "input", "kind": "pii", "action": "redact"}],
        endpoints=set(),
    )
    assert clean["entities"] == ["card", "iban", "email", "phone", "national_id"]
    assert clean["region"] == "US" and clean["message"]


@pytest.mark.parametrize(
    ("guardrail", "problem"),
    [
        ({"stage": "input", "kind": "terms", "action": "block", "terms": ["x"]}, "#1 name"),
        ({"name": "a", "stage": "sideways", "kind": "terms", "action": "block"}, "#1 (a) stage"),
        ({"name": "a", "stage": "input", "kind": "json_schema", "action": "block"}, "kind"),
        ({"name": "a", "stage": "input", "kind": "terms", "action": "approval"}, "action"),
        ({"name": "a", "stage": "input", "kind": "terms", "action": "block"}, "terms"),
        ({"name": "a", "stage": "input", "kind": "regex", "action": "flag", "patterns": ["("]}, "patterns"),
        ({"name": "a", "stage": "input", "kind": "pii", "action": "flag", "entities": ["dna"]}, "entities"),
        ({"name": "a", "stage": "output", "kind": "classifier", "action": "redact", "rubric": "r"}, "action"),
        ({"name": "a", "stage": "output", "kind": "classifier", "action": "flag", "rubric": "r", "mode": "parallel"}, "mode"),
        ({"name": "a", "stage": "input", "kind": "classifier", "action": "flag", "rubric": "r", "endpoint": 99999}, "endpoint"),
        ({"name": "a", "stage": "output", "kind": "json_schema", "action": "block", "schema": {"type": 5}}, "schema"),
    ],
)  # fmt: skip
def test_it_names_the_guardrail_and_the_field_that_is_wrong(guardrail, problem):
    with pytest.raises(ValidationError) as caught:
        guardrails_validate(value=[guardrail], endpoints=set())
    (message,) = caught.value.message_dict["guardrails"]
    assert problem in message, message


def test_it_refuses_two_guardrails_of_one_name():
    one = {"name": "a", "stage": "input", "kind": "terms", "action": "flag", "terms": ["x"]}
    with pytest.raises(ValidationError) as caught:
        guardrails_validate(value=[one, one], endpoints=set())
    assert caught.value.message_dict["guardrails"] == [
        "#2 (a) name: another guardrail has this name."
    ]


@pytest.mark.django_db
def test_it_takes_guardrails_through_the_api_and_shows_them_in_the_diff(client: Client, alice):
    agent = AgentFactory(slug="support")
    agent_version_create(agent=agent, author=alice, publish=True)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api_key_create(user=alice, name='t')[1]}"}
    bad = client.patch(
        "/api/agents/support",
        {"guardrails": [{"name": "x", "stage": "input", "kind": "terms", "action": "block"}]},
        content_type="application/json",
        **headers,
    )
    assert bad.status_code == 422 and bad.json()["field"] == "guardrails", bad.content
    assert "#1 (x) terms" in json.dumps(bad.json())
    assert AgentVersion.objects.filter(agent=agent).count() == 1

    guardrail = {"name": "cards", "stage": "input", "kind": "pii", "action": "redact"}
    good = client.patch(
        "/api/agents/support",
        {"guardrails": [guardrail], "publish": True},
        content_type="application/json",
        **headers,
    )
    assert good.status_code == 200, good.content
    assert good.json()["config"]["guardrails"][0]["entities"][0] == "card"
    diff = client.get("/api/agents/support/versions/2/diff", **headers)
    assert diff.status_code == 200, diff.content
    assert "cards (input, pii → redact)" in json.dumps(diff.json(), ensure_ascii=False)


@pytest.mark.django_db
def test_it_shows_a_guardrail_error_beside_the_builder_field(client: Client, alice):
    agent = AgentFactory(slug="support")
    agent_version_create(agent=agent, author=alice, publish=True)
    client.force_login(alice)
    page = client.get("/agents/support/")
    assert page.status_code == 200 and 'name="guardrails"' in page.content.decode()
    from agentops.agents.forms import agent_initial

    form = {k: v for k, v in agent_initial(agent).items() if v is not None}
    form.update(
        endpoint=agent.endpoint_id,
        tools=[],
        builtins=[],
        fallbacks="",
        guardrails='[{"name": "x", "stage": "input", "kind": "regex", "action": "flag", "patterns": ["("]}]',
    )
    response = client.post("/agents/support/", form)
    assert response.status_code == 400  # the form again, with its errors
    assert "#1 (x) patterns" in response.content.decode()
    assert AgentVersion.objects.filter(agent=agent).count() == 1


@pytest.mark.parametrize(("error_class", "shown"), [("guardrail", "idle"), ("bug", "failed")])
def test_the_widget_shows_a_blocked_run_as_its_reply_not_as_an_error(error_class, shown):
    from agentops.widget.consumers import WidgetConsumer

    event = {"kind": "run.status", "run_id": "r", "status": "failed", "error_class": error_class}
    assert WidgetConsumer.shown(event) == {"kind": "status", "run_id": "r", "status": shown}


@pytest.mark.django_db
def test_it_names_a_wrong_transfer_through_the_api(client: Client, alice):
    agent = AgentFactory(slug="triage")
    AgentFactory(slug="billing")
    agent_version_create(agent=agent, author=alice, publish=True)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api_key_create(user=alice, name='t')[1]}"}
    good = {"agent": "billing", "description": "refunds"}
    for entry, problem in [
        ({"agent": "nobody", "description": "x"}, "#1 (nobody) agent: no agent"),
        ({"agent": "triage", "description": "x"}, "to itself"),
        ({**good, "description": ""}, "#1 (billing) description"),
        ({**good, "history": "most"}, "#1 (billing) history"),
        ({**good, "history": "last_n", "turns": 0}, "#1 (billing) turns"),
        ({**good, "when": {"pattern": "("}}, "#1 (billing) when: pattern"),
        ({**good, "when": {"weekday": "mon"}}, "#1 (billing) when"),
    ]:
        bad = client.patch(
            "/api/agents/triage",
            {"transfers": [entry]},
            content_type="application/json",
            **headers,
        )
        assert bad.status_code == 422 and bad.json()["field"] == "transfers", bad.content
        assert problem in json.dumps(bad.json()), (entry, bad.json())
    assert AgentVersion.objects.filter(agent=agent).count() == 1
    ok = client.patch(
        "/api/agents/triage",
        {"transfers": [{**good, "history": "last_n", "turns": 2}]},
        content_type="application/json",
        **headers,
    )
    assert ok.status_code == 200, ok.content
    assert ok.json()["config"]["transfers"] == [
        {"agent": "billing", "description": "refunds", "history": "last_n", "turns": 2}
    ]


@pytest.mark.django_db
def test_it_names_a_wrong_routing_rule_and_shows_routing_in_the_diff(client: Client, alice):
    from agentops.widget.services import widget_key_create

    agent = AgentFactory(slug="triage")
    AgentFactory(slug="billing")
    shop, _ = widget_key_create(agent=agent, name="shop", allowed_origins=[], actor=alice)
    agent_version_create(agent=agent, author=alice, publish=True)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api_key_create(user=alice, name='t')[1]}"}
    good = {"agent": "billing", "description": "refunds"}
    for when, problem in [
        ({"widget_key": "pk_nobody"}, "#1 (billing) when: widget_key: no widget key"),
        ({"widget_key": 7}, "#1 (billing) when: widget_key: give a text"),
        ({"classify": "yes"}, "#1 (billing) when: classify: give true"),
        ({"classify": False}, "#1 (billing) when: classify: give true"),
        ({"end_user_attributes": {"plan": "pro"}}, "#1 (billing) when: give an object of"),
    ]:
        bad = client.patch(
            "/api/agents/triage",
            {"transfers": [{**good, "when": when}]},
            content_type="application/json",
            **headers,
        )
        assert bad.status_code == 422 and bad.json()["field"] == "transfers", bad.content
        assert problem in json.dumps(bad.json()), (when, bad.json())
    assert AgentVersion.objects.filter(agent=agent).count() == 1

    when = {"widget_key": shop.public_key, "classify": True}
    ok = client.patch(
        "/api/agents/triage",
        {"transfers": [{**good, "when": when}], "publish": True},
        content_type="application/json",
        **headers,
    )
    assert ok.status_code == 200, ok.content
    assert ok.json()["config"]["transfers"][0]["when"] == when
    diff = client.get("/api/agents/triage/versions/2/diff", **headers)
    assert diff.status_code == 200, diff.content
    shown = f"billing (all; when widget_key {shop.public_key}, classifier)"
    assert shown in json.dumps(diff.json(), ensure_ascii=False)


@pytest.mark.django_db
def test_it_shows_a_routing_error_beside_the_builder_field(client: Client, alice):
    from agentops.agents.forms import agent_initial

    agent = AgentFactory(slug="triage")
    AgentFactory(slug="billing")
    agent_version_create(agent=agent, author=alice, publish=True)
    client.force_login(alice)
    form = {k: v for k, v in agent_initial(agent).items() if v is not None}
    form.update(
        endpoint=agent.endpoint_id,
        tools=[],
        builtins=[],
        fallbacks="",
        transfers='[{"agent": "billing", "description": "refunds", "when": {"classify": 1}}]',
    )
    response = client.post("/agents/triage/", form)
    assert response.status_code == 400  # the form again, with its errors
    page = response.content.decode()
    field = page.index('name="transfers"')
    assert "#1 (billing) when: classify: give true" in page[field - 3000 : field + 3000]
    assert AgentVersion.objects.filter(agent=agent).count() == 1


def test_it_refuses_schema_patterns_that_no_time_limit_could_stop():
    guardrail = {
        "name": "ids",
        "stage": "output",
        "kind": "json_schema",
        "action": "block",
        "schema": {"properties": {"id": {"type": "string", "pattern": "^(a+)+$"}}},
    }
    with pytest.raises(ValidationError) as caught:
        guardrails_validate(value=[guardrail], endpoints=set())
    assert (
        "#1 (ids) schema: pattern and patternProperties"
        in caught.value.message_dict["guardrails"][0]
    )


@pytest.mark.parametrize(
    ("guardrail", "holds"),
    [
        ({"stage": "output", "kind": "terms", "action": "flag", "terms": ["x"]}, True),
        ({"stage": "input", "kind": "classifier", "action": "block", "rubric": "r", "mode": "parallel"}, True),
        ({"stage": "input", "kind": "classifier", "action": "block", "rubric": "r"}, False),
        ({"stage": "input", "kind": "terms", "action": "block", "terms": ["x"]}, False),
    ],
)  # fmt: skip
def test_it_streams_no_answer_that_a_guardrail_may_yet_stop(guardrail, holds):
    from types import SimpleNamespace

    from agentops.runtime.guards import RunGuards

    (clean,) = guardrails_validate(value=[{"name": "g", **guardrail}], endpoints=set())
    driver = SimpleNamespace(config=SimpleNamespace(guardrails=[clean]))
    assert RunGuards(driver).holds_answers is holds  # type: ignore[arg-type]
