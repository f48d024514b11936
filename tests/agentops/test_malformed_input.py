"""The shapes of malformed input that answered 500 (issue 21, item 20), each a 4xx naming the
problem now: a NUL in a URL, in the notes and labels forms, a lone surrogate or nesting 1,000
deep in JSON, NaN or Infinity (no JSON numbers: Postgres refuses them), an overlong login name, the endpoint test without htmx, a 200-character model."""

from __future__ import annotations

import json

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from agentops.agents.services import agent_version_create
from agentops.auth import api_key_create
from agentops.experiments.models import Dataset, Experiment
from agentops.operators.models import Label, PrivateNote
from tests.agentops.operators.helpers import make_handoff
from tests.agentops.test_api import auth
from tests.agentops.widget.helpers import OWN_ORIGIN, frame_token, make_key
from tests.factories import AgentFactory, EndpointFactory

SURROGATE = '{"input": "\\ud800 hi"}'
DEEP = "[" * 1000 + "]" * 1000


@pytest.mark.django_db(transaction=True)
def test_a_nul_in_the_url_is_refused_by_every_door(web, alice):  # type: ignore[no-untyped-def]
    key = api_key_create(user=alice, name="t")[1]
    bearer = {"Authorization": f"Bearer {key}"}
    for path, headers in (
        ("/widget/frame/?key=%00", {}),
        ("/widget/api/available?key=%00", {}),
        ("/v1/models/%00", bearer),
        ("/api/sessions?user=%00", bearer),
        ("/mcp/?x=%00", bearer),
        ("/operators/%00/", {}),
    ):
        response = httpx.get(f"http://{web}{path}", headers=headers)
        assert response.status_code == (422 if path.startswith("/api/") else 400), path
        assert "NUL" in response.text, path
    error = httpx.get(f"http://{web}/v1/models/%00", headers=bearer).json()["error"]
    assert error["param"] == "path" and error["type"] == "invalid_request_error"


@pytest.mark.django_db(transaction=True)
def test_v1_refuses_a_lone_surrogate_and_deep_json_naming_the_field(web, alice):  # type: ignore[no-untyped-def]
    key = api_key_create(user=alice, name="t")[1]
    url, headers = f"http://{web}/v1/chat/completions", {"Authorization": f"Bearer {key}"}
    body = '{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}'
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "messages"
    assert "messages.0.content" in response.json()["error"]["message"]
    response = httpx.post(url, content='{"model": ' + DEEP + "}", headers=headers)
    assert response.status_code == 400 and "nested" in response.json()["error"]["message"]


def test_the_api_refuses_a_lone_surrogate_and_deep_json_naming_the_field(alice, db):  # type: ignore[no-untyped-def]
    key = api_key_create(user=alice, name="t")[1]
    api = Client()
    dataset = Dataset.objects.create(name="d")
    item = dataset.items.create(input="hi", reference="hello", source="api")
    agent = AgentFactory()
    agent_version_create(agent=agent, author=alice, publish=True)
    for method, path, body, field in (
        ("post", f"/api/datasets/{dataset.pk}/items", SURROGATE, "input"),
        ("patch", f"/api/datasets/{dataset.pk}/items/{item.pk}", SURROGATE, "input"),
        ("patch", f"/api/agents/{agent.slug}", '{"system_prompt": "\\udfff"}', "system_prompt"),
        ("post", f"/api/datasets/{dataset.pk}/items", '{"context": ' + DEEP + "}", "context"),
        (
            "post",
            f"/api/datasets/{dataset.pk}/items",
            '{"input": "x", "context": {"n": NaN}}',
            "context.n",
        ),
        (
            "post",
            "/api/knowledge/search",
            '{"query": "x", "metadata": {"v": Infinity}}',
            "metadata.v",
        ),
    ):
        response = getattr(api, method)(path, body, content_type="application/json", **auth(key))
        assert response.status_code == 422, (path, response.content)
        assert response.json()["field"] == field, response.json()
    item.refresh_from_db()
    assert item.input == "hi" and dataset.items.count() == 1


def test_the_jsonl_import_names_the_line_of_a_lone_surrogate_or_deep_json(admin_client):  # type: ignore[no-untyped-def]
    dataset = Dataset.objects.create(name="d")
    for line in (SURROGATE, '{"input": "x", "context": ' + DEEP + "}"):
        upload = SimpleUploadedFile("items.jsonl", ('{"input": "ok"}\n' + line).encode())
        response = admin_client.post(
            f"/datasets/{dataset.pk}/import", {"file": upload}, follow=True
        )
        assert response.status_code == 200
        page = response.content.decode()
        assert "line 2" in page and ("surrogate" in page or "nested" in page)
    assert not dataset.items.exists()


def test_the_widget_refuses_a_lone_surrogate_and_deep_json(client, db):  # type: ignore[no-untyped-def]
    key, _ = make_key()
    token = frame_token(client, key)
    for path in ("messages", "identify", "rating"):
        for body in ('{"content": "\\ud800"}', DEEP):
            response = client.post(
                f"/widget/api/{path}",
                body,
                content_type="application/json",
                HTTP_X_WIDGET_TOKEN=token,
                HTTP_ORIGIN=OWN_ORIGIN,
            )
            assert response.status_code == 400, (path, body[:20], response.content)
            assert "surrogate" in response.json()["error"] or "nested" in response.json()["error"]


def test_notes_and_labels_with_a_nul_are_form_errors(client, bob):  # type: ignore[no-untyped-def]
    handoff = make_handoff()
    client.force_login(bob)
    response = client.post(
        f"/operators/handoffs/{handoff.pk}/note", {"content": "a\x00b"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 422 and b"NUL" in response.content
    response = client.post(
        f"/operators/handoffs/{handoff.pk}/labels", {"name": "a\x00b"}, HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 422 and b"NUL" in response.content
    assert not PrivateNote.objects.exists() and not Label.objects.exists()


def test_a_login_name_longer_than_axes_column_is_a_failed_login(client, db):  # type: ignore[no-untyped-def]
    for path in ("/login/", "/admin/login/"):
        response = Client().post(path, {"username": "u" * 300, "password": "x"})
        assert response.status_code == 200, path  # the form again, with its error
        assert b"correct username" in response.content or b"at most" in response.content


def test_the_endpoint_test_without_htmx_shows_the_page(admin_client):  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory()
    response = admin_client.post(f"/endpoints/{endpoint.pk}/test", {"model": ""})
    assert response.status_code == 200
    assert endpoint.name in response.content.decode()


def test_a_variant_model_of_200_characters_is_kept(alice, db):  # type: ignore[no-untyped-def]
    key = api_key_create(user=alice, name="t")[1]
    agent = AgentFactory()
    version = agent_version_create(agent=agent, author=alice, publish=True)
    dataset = Dataset.objects.create(name="d")
    dataset.items.create(input="hi", reference="hello", source="api")
    model = "m" * 200
    body = {
        "name": "long model",
        "dataset": dataset.pk,
        "variants": [{"version": version.pk}, {"version": version.pk, "model": model}],
        "checks": [{"kind": "exact"}],
    }
    response = Client().post(
        "/api/experiments", json.dumps(body), content_type="application/json", **auth(key)
    )
    assert response.status_code == 201, response.content
    label = response.json()["variants"][1]["label"]
    assert len(label) == 200 and label.endswith("…")
    experiment = Experiment.objects.get()
    assert experiment.variants.last().version.config["model"] == model


def test_admin_json_fields_refuse_a_lone_surrogate_and_deep_json(admin_client):  # type: ignore[no-untyped-def]
    for value in ('{"a": "\\ud800"}', DEEP):
        response = admin_client.post(
            "/admin/agentops/team/add/", {"slug": "t", "name": "T", "working_hours": value}
        )
        assert response.status_code == 200  # the form again, with the field's error
        assert b"surrogate" in response.content or b"nested" in response.content


def test_a_next_with_a_nul_goes_to_the_default_page(client, bob):  # type: ignore[no-untyped-def]
    client.force_login(bob)
    response = client.post("/operators/presence", {"presence": "online", "next": "/a\x00b"})
    assert response.status_code == 302 and response["Location"] == "/operators/"
