from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from agentops.agents.services import agent_version_create
from agentops.experiments.models import Dataset, DatasetItem, Experiment, ItemSource
from agentops.models import Message, Role, RunStatus
from agentops.runtime.checkpoint import messages_append
from tests.agentops.experiments.test_services import _conversation
from tests.agentops.operators.helpers import make_handoff
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator_client(client, bob):  # type: ignore[no-untyped-def]
    client.force_login(bob)
    return client


def test_it_adds_a_failed_run_from_the_failures_page_to_a_new_dataset(operator_client):
    run = _conversation(status=RunStatus.FAILED)
    run.error_class = "model_error"
    run.save()
    page = operator_client.get("/failures/").content.decode()
    assert f"/datasets/add?run={run.pk}" in page
    page = operator_client.get(f"/datasets/add?run={run.pk}").content.decode()
    assert "Where is my order?" in page and "Hello! How can I help?" in page
    response = operator_client.post(
        f"/datasets/add?run={run.pk}", {"new_dataset": "regressions", "reference": "On its way."}
    )
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    (item,) = DatasetItem.objects.filter(dataset__name="regressions")
    assert (item.source, item.reference) == (ItemSource.FAILURE, "On its way.")


def test_it_offers_a_handoff_turn_with_the_operators_reply_as_reference(operator_client):
    handoff = make_handoff()
    messages_append(
        session_id=handoff.session_id,
        messages=[Message(role=Role.OPERATOR, content="A human here: done.")],
    )
    assert (
        f"/datasets/add?handoff={handoff.pk}"
        in operator_client.get(f"/operators/handoffs/{handoff.pk}/").content.decode()
    )
    page = operator_client.get(f"/datasets/add?handoff={handoff.pk}").content.decode()
    assert "A human here: done." in page  # the reference, ready to edit
    for odd in ("²", "99999999999", "x"):
        assert operator_client.get(f"/datasets/add?handoff={odd}").status_code == 404


def test_it_asks_for_a_dataset_when_none_is_chosen(operator_client):
    run = _conversation()
    response = operator_client.post(f"/datasets/add?run={run.pk}", {"reference": "x"})
    assert response.status_code == 400
    assert "Choose a dataset or name a new one." in response.content.decode()
    assert not DatasetItem.objects.exists()


def test_it_edits_a_reference_and_deletes_an_item_with_htmx(operator_client):
    dataset = Dataset.objects.create(name="d")
    item = DatasetItem.objects.create(dataset=dataset, input="q", reference="old", source="api")
    response = operator_client.post(
        f"/datasets/items/{item.pk}/reference", {"reference": "new"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200 and "data-saved" in response.content.decode()
    item.refresh_from_db()
    assert item.reference == "new"
    response = operator_client.post(f"/datasets/items/{item.pk}/delete", HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and not DatasetItem.objects.exists()


def test_it_imports_a_jsonl_file_and_exports_it_again(operator_client):
    dataset = Dataset.objects.create(name="d")
    rows = [{"input": "a", "context": [], "reference": "A"}]
    upload = SimpleUploadedFile("d.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    operator_client.post(f"/datasets/{dataset.pk}/import", {"file": upload})
    exported = operator_client.get(f"/datasets/{dataset.pk}/export.jsonl")
    assert [json.loads(line) for line in exported.content.decode().splitlines()] == rows
    upload = SimpleUploadedFile("d.jsonl", b'{"input": "b"}\nnot json')
    response = operator_client.post(f"/datasets/{dataset.pk}/import", {"file": upload}, follow=True)
    assert "line 2: not JSON" in response.content.decode()
    assert dataset.items.count() == 1


def test_it_shows_a_bad_check_on_its_field_in_the_experiment_form(operator_client, alice):
    dataset = Dataset.objects.create(name="d")
    version = agent_version_create(agent=AgentFactory(), author=alice)
    response = operator_client.post(
        "/experiments/",
        {"name": "e", "dataset": dataset.pk, "baseline": version.pk, "regex": "(oops"},
    )
    assert response.status_code == 400
    assert "Not a valid regular expression" in response.content.decode()
    assert not Experiment.objects.exists()
    response = operator_client.post(
        "/experiments/",
        {
            "name": "e",
            "dataset": dataset.pk,
            "baseline": version.pk,
            "exact": "on",
            "threshold": "0.9",
        },
    )
    experiment = Experiment.objects.get()
    assert response["Location"] == f"/experiments/{experiment.pk}/"
    assert experiment.threshold == 0.9
    page = operator_client.get(f"/experiments/{experiment.pk}/").content.decode()
    assert "Run the experiment" in page
