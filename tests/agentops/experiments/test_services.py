from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from agentops.agents.services import agent_version_create
from agentops.experiments.models import CheckKind, Dataset, DatasetItem, ItemSource
from agentops.experiments.selectors import dataset_jsonl
from agentops.experiments.services import (
    dataset_create,
    dataset_import_jsonl,
    dataset_item_from_handoff,
    dataset_item_from_run,
    experiment_create,
)
from agentops.models import Message, Role, Run, RunStatus
from agentops.runtime.checkpoint import messages_append
from tests.agentops.operators.helpers import make_handoff
from tests.factories import AgentFactory, EndpointFactory, SessionFactory

pytestmark = pytest.mark.django_db


def _conversation(status: str = RunStatus.SUCCEEDED) -> Run:
    session = SessionFactory()
    messages_append(
        session_id=session.pk,
        messages=[
            Message(role=Role.USER, content="hi"),
            Message(role=Role.ASSISTANT, content="Hello! How can I help?"),
        ],
    )
    (trigger,) = messages_append(
        session_id=session.pk, messages=[Message(role=Role.USER, content="Where is my order?")]
    )
    run = Run.objects.create(session=session, agent=session.agent, trigger=trigger, status=status)
    if status == RunStatus.SUCCEEDED:
        call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
        messages_append(
            session_id=session.pk,
            messages=[
                Message(role=Role.ASSISTANT, content="", tool_calls=[call], run=run),
                Message(role=Role.TOOL, content="shipped", tool_call_id="c1", run=run),
                Message(role=Role.ASSISTANT, content="It shipped yesterday.", run=run),
            ],
        )
    return run


def test_it_adds_the_turn_a_run_answered_with_its_context_and_answer(alice):
    dataset = dataset_create(name="orders", actor=alice)
    run = _conversation()
    item = dataset_item_from_run(dataset=dataset, run=run, actor=alice)
    assert item.input == "Where is my order?"
    assert item.context == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ]
    assert item.reference == "It shipped yesterday."
    assert (item.source, item.source_run) == (ItemSource.RUN, run)


def test_it_adds_a_failed_run_as_a_failure_with_the_reference_given(alice):
    dataset = dataset_create(name="failures", actor=alice)
    run = _conversation(status=RunStatus.FAILED)
    item = dataset_item_from_run(
        dataset=dataset, run=run, actor=alice, reference="Let me check that for you."
    )
    assert (item.source, item.reference, item.input) == (
        ItemSource.FAILURE,
        "Let me check that for you.",
        "Where is my order?",
    )


def test_it_takes_the_operators_reply_to_a_handoff_as_the_reference(alice, bob):
    handoff = make_handoff()
    messages_append(
        session_id=handoff.session_id,
        messages=[
            Message(role=Role.OPERATOR, content="Hi, a human here. Your refund is on its way.")
        ],
    )
    dataset = dataset_create(name="handoffs", actor=alice)
    item = dataset_item_from_handoff(dataset=dataset, handoff=handoff, actor=bob)
    assert item.input == "I want a human"
    assert item.reference == "Hi, a human here. Your refund is on its way."
    assert item.source == ItemSource.HANDOFF


def test_it_refuses_a_run_that_answered_no_user_message(alice):
    dataset = dataset_create(name="x", actor=alice)
    run = Run.objects.create(session=SessionFactory(), agent=AgentFactory())
    run.agent = run.session.agent
    with pytest.raises(ValidationError) as error:
        dataset_item_from_run(dataset=dataset, run=run, actor=alice)
    assert "source" in error.value.message_dict


def test_it_imports_and_exports_jsonl_and_refuses_a_bad_line_whole(alice):
    dataset = dataset_create(name="imported", actor=alice)
    good = [
        {"input": "a", "reference": "A"},
        {"input": "b", "context": [{"role": "user", "content": "earlier"}]},
    ]
    text = "\n".join(json.dumps(row) for row in good) + "\n\n"
    assert dataset_import_jsonl(dataset=dataset, text=text, actor=alice) == 2
    exported = [json.loads(line) for line in dataset_jsonl(dataset=dataset)]
    assert exported == [
        {"input": "a", "context": [], "reference": "A"},
        {"input": "b", "context": [{"role": "user", "content": "earlier"}], "reference": ""},
    ]
    bad = json.dumps({"input": "c"}) + "\n" + json.dumps({"input": "d", "context": [{"role": "x"}]})
    with pytest.raises(ValidationError) as error:
        dataset_import_jsonl(dataset=dataset, text=bad, actor=alice)
    assert error.value.message_dict["file"][0].startswith("line 2: context.0:")
    assert DatasetItem.objects.filter(dataset=dataset).count() == 2  # nothing of the bad file


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"kind": "regex", "expected": "(unclosed"}, "checks.0.expected"),
        ({"kind": "json_schema", "schema": {"type": "nope"}}, "checks.0.schema"),
        ({"kind": "json_schema", "schema": {"$ref": "http://127.0.0.1:9/s"}}, "checks.0.schema"),
        (
            {"kind": "json_schema", "schema": {"items": {"$ref": "file:///etc/passwd"}}},
            "checks.0.schema",
        ),
        (
            {
                "kind": "json_schema",
                "schema": {"patternProperties": {"^a": {}}, "unevaluatedProperties": False},
            },
            "checks.0.schema",
        ),
        ({"kind": "judge"}, "checks.0.endpoint"),
        ({"kind": "fuzzy"}, "checks.0.kind"),
    ],
)
def test_it_refuses_a_check_that_could_never_score_naming_the_field(alice, check, field):
    dataset = Dataset.objects.create(name="d")
    version = agent_version_create(agent=AgentFactory(), author=alice)
    with pytest.raises(ValidationError) as error:
        experiment_create(
            name="e",
            dataset=dataset,
            variants=[{"version": version.pk}],
            checks=[check],
            actor=alice,
        )
    assert list(error.value.message_dict) == [field]


def test_it_derives_an_unpublished_version_for_a_variant_with_another_model(alice):
    dataset = Dataset.objects.create(name="d")
    agent = AgentFactory(endpoint=EndpointFactory(default_model="small"))
    version = agent_version_create(agent=agent, author=alice, publish=True)
    experiment = experiment_create(
        name="bigger model",
        dataset=dataset,
        variants=[{"version": version.pk}, {"version": version.pk, "model": "large"}],
        checks=[{"kind": CheckKind.CONTAINS, "expected": "ok"}],
        actor=alice,
    )
    base, other = experiment.variants.order_by("position")
    assert base.version == version
    assert other.version.derived_from == version
    assert other.version.config["model"] == "large"
    assert other.version.published_at is None
    agent.refresh_from_db()
    assert agent.published_version == version
    with pytest.raises(ValidationError) as error:
        experiment_create(
            name="e",
            dataset=dataset,
            variants=[{"version": 10**9}],
            checks=[{"kind": "exact"}],
            actor=alice,
        )
    assert list(error.value.message_dict) == ["variants.0.version"]
