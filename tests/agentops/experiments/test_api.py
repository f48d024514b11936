from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentops.agents.services import agent_version_create
from agentops.auth import api_key_create
from agentops.experiments.models import Dataset
from agentops.testing.processes import CONCURRENT_WORKER, Proc, child_env, start_worker
from tests.agentops.experiments.helpers import wait_for_experiment
from tests.agentops.test_api import auth
from tests.factories import AgentFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def concurrent_worker(django_db_setup) -> Iterator[Proc]:  # type: ignore[no-untyped-def]
    proc = start_worker(
        child_env(), name="exp-api", worker_class=CONCURRENT_WORKER, queues=("runs",)
    )
    yield proc
    proc.stop()


@pytest.fixture
def key(bob):  # type: ignore[no-untyped-def]
    return api_key_create(user=bob, name="tests")[1]


def _post(client, path, body, key):  # type: ignore[no-untyped-def]
    return client.post(path, body, content_type="application/json", **auth(key))


def test_it_creates_a_dataset_adds_items_runs_an_experiment_and_reports_results(
    client, key, concurrent_worker, dev_agent, devmodel, model_name, alice
):
    version = agent_version_create(agent=dev_agent, author=alice, publish=True)
    response = _post(client, "/api/datasets", {"name": "api"}, key)
    assert response.status_code == 201, response.json()
    dataset = response.json()["id"]
    for text in ("alpha", "beta"):
        response = _post(
            client,
            f"/api/datasets/{dataset}/items",
            {
                "input": text,
                "context": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hey"},
                ],
                "reference": f"You said: {text}",
            },
            key,
        )
        assert response.status_code == 201, response.json()
    item = response.json()["id"]
    response = client.patch(
        f"/api/datasets/{dataset}/items/{item}",
        {"reference": "You said: beta"},
        content_type="application/json",
        **auth(key),
    )
    assert response.status_code == 200 and response.json()["reference"] == "You said: beta"
    response = _post(
        client,
        "/api/experiments",
        {
            "name": "other model",
            "dataset": dataset,
            "variants": [
                {"version": version.pk},
                {"version": version.pk, "model": f"{model_name}-b"},
            ],
            "checks": [{"kind": "exact"}, {"kind": "regex", "expected": "^You said"}],
            "threshold": 0.5,
        },
        key,
    )
    assert response.status_code == 201, response.json()
    experiment = response.json()
    assert [v["label"] for v in experiment["variants"]][1].endswith(f"({model_name}-b)")
    response = _post(client, f"/api/experiments/{experiment['id']}/run", {}, key)
    assert response.status_code == 202
    assert response.json()["status"] == "running"
    wait_for_experiment(experiment["id"])
    body = client.get(f"/api/experiments/{experiment['id']}", **auth(key)).json()
    assert body["status"] == "finished"
    assert [v["score"] for v in body["variants"]] == [1.0, 1.0]
    assert [v["flagged"] for v in body["variants"]] == [False, False]
    results = client.get(f"/api/experiments/{experiment['id']}/results", **auth(key)).json()
    assert len(results["results"]) == 4
    assert {r["output"] for r in results["results"]} == {"You said: alpha", "You said: beta"}
    assert not any(r["regressed"] for r in results["results"])
    # The derived variant ran its own model.
    assert len(devmodel.requests(f"{model_name}-b")) == 2
    # Running it twice is refused, naming why.
    response = _post(client, f"/api/experiments/{experiment['id']}/run", {}, key)
    assert response.status_code == 422 and response.json()["field"] == "status"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/datasets", {"name": ""}, "name"),
        (
            "/api/datasets/{dataset}/items",
            {"input": "x", "context": [{"role": "tool", "content": "y"}]},
            "context.0.role",
        ),
        (
            "/api/datasets/{dataset}/items",
            {"input": "x", "run": "00000000-0000-0000-0000-000000000000"},
            "input",
        ),
        ("/api/datasets/{dataset}/items", {"run": "00000000-0000-0000-0000-000000000000"}, "run"),
        (
            "/api/experiments",
            {
                "name": "e",
                "dataset": 10**9,
                "variants": [{"version": 1}],
                "checks": [{"kind": "exact"}],
            },
            "dataset",
        ),
        (
            "/api/experiments",
            {"name": "e", "dataset": "{dataset}", "variants": [], "checks": [{"kind": "exact"}]},
            "variants",
        ),
        (
            "/api/experiments",
            {
                "name": "e",
                "dataset": "{dataset}",
                "variants": [{"version": 10**9}],
                "checks": [{"kind": "exact"}],
            },
            "variants.0.version",
        ),
        (
            "/api/experiments",
            {
                "name": "e",
                "dataset": "{dataset}",
                "variants": [{"version": 1}],
                "checks": [{"kind": "regex", "expected": "("}],
            },
            "checks.0.expected",
        ),
        (
            "/api/experiments",
            {
                "name": "e",
                "dataset": "{dataset}",
                "variants": [{"version": 1}],
                "checks": [{"kind": "maybe"}],
            },
            "checks.0.kind",
        ),
    ],
)
def test_it_answers_bad_input_with_a_4xx_naming_the_field(client, key, path, body, field):
    dataset = Dataset.objects.create(name="d").pk
    path = path.format(dataset=dataset)
    body = {k: (dataset if v == "{dataset}" else v) for k, v in body.items()}
    if body.get("variants") == [{"version": 1}]:  # an existing version, so the checks are judged
        version = agent_version_create(agent=AgentFactory(), author=None).pk
        body["variants"] = [{"version": version}]
    response = _post(client, path, body, key)
    assert 400 <= response.status_code < 500, response.json()
    assert response.json()["field"] == field, response.json()


def test_it_publishes_the_endpoints_in_the_openapi_schema(client, key):
    paths = client.get("/api/openapi.json", **auth(key)).json()["paths"]
    for path in (
        "/api/datasets",
        "/api/datasets/{dataset_id}/items",
        "/api/datasets/{dataset_id}/items/{item_id}",
        "/api/experiments",
        "/api/experiments/{experiment_id}/run",
        "/api/experiments/{experiment_id}/results",
    ):
        assert path in paths


def test_it_needs_the_operator_role_to_write(client, charlie):
    viewer = api_key_create(user=charlie, name="v")[1]
    assert _post(client, "/api/datasets", {"name": "x"}, viewer).status_code == 403
    assert client.get("/api/datasets", **auth(viewer)).status_code == 200


def test_it_refuses_an_item_change_that_is_not_a_json_object(client, key):
    dataset = Dataset.objects.create(name="d")
    item = dataset.items.create(input="hi", reference="hello", source="api")
    response = client.patch(
        f"/api/datasets/{dataset.pk}/items/{item.pk}",
        "[null, null]",
        content_type="application/json",
        **auth(key),
    )
    assert response.status_code == 422, response.content
    item.refresh_from_db()
    assert (item.input, item.reference) == ("hi", "hello")
