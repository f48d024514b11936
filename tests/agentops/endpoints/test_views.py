"""Endpoint and price pages: admins edit and test, operators reset, viewers read; the key is
write-only."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.urls import reverse

from agentops.models import BreakerCall, BreakerState, BreakerTransition, ModelEndpoint
from tests.factories import EndpointFactory
from tracing.models import ModelPrice

pytestmark = pytest.mark.usefixtures("db")
SECRET = "sk-live-write-only-4242"


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def endpoint_form(**changes) -> dict[str, object]:  # type: ignore[no-untyped-def]
    data: dict[str, object] = {
        "name": "openai",
        "base_url": "https://api.openai.com/v1",
        "default_model": "gpt-4o-mini",
        "timeout_seconds": 30,
        "breaker_cooldown_seconds": 30,
        "api_key": SECRET,
    }
    data.update(changes)
    return data


def test_it_creates_an_endpoint_whose_key_is_never_shown(alice):
    client = logged_in(alice)
    response = client.post(reverse("endpoints:create"), endpoint_form())
    endpoint = ModelEndpoint.objects.get(name="openai")
    assert response.status_code == 302 and endpoint.api_key == SECRET
    page = client.get(reverse("endpoints:detail", args=[endpoint.pk])).content.decode()
    assert SECRET not in page and "An API key is stored" in page
    # Saving without a key keeps the stored one.
    client.post(
        reverse("endpoints:detail", args=[endpoint.pk]),
        endpoint_form(api_key="", timeout_seconds=9),
    )
    endpoint.refresh_from_db()
    assert endpoint.api_key == SECRET and endpoint.timeout_seconds == 9


def test_it_names_the_field_of_bad_input_and_keeps_what_was_stored(alice):
    endpoint = EndpointFactory(name="kept", timeout_seconds=10)
    response = logged_in(alice).post(
        reverse("endpoints:detail", args=[endpoint.pk]),
        endpoint_form(name="kept", base_url="not a url", timeout_seconds=0),
    )
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "base_url" in errors and "timeout_seconds" in errors
    endpoint.refresh_from_db()
    assert endpoint.timeout_seconds == 10 and endpoint.base_url.startswith("http://")


def test_it_lets_viewers_read_and_only_admins_edit(bob, charlie):
    endpoint = EndpointFactory()
    viewer = logged_in(charlie)
    assert viewer.get(reverse("endpoints:list")).status_code == 200
    page = viewer.get(reverse("endpoints:detail", args=[endpoint.pk]))
    assert page.status_code == 200 and b"Read-only" in page.content
    assert (
        viewer.post(reverse("endpoints:detail", args=[endpoint.pk]), endpoint_form()).status_code
        == 403
    )
    assert viewer.post(reverse("endpoints:reset", args=[endpoint.pk])).status_code == 403
    assert viewer.post(reverse("endpoints:test", args=[endpoint.pk])).status_code == 403
    operator = logged_in(bob)
    assert operator.get(reverse("endpoints:create")).status_code == 403
    assert operator.post(reverse("endpoints:prices"), {"model": "x"}).status_code == 403


def test_it_tests_a_connection_for_admins_only(alice, bob, devmodel, model_name):
    """Model endpoints are not behind the egress guard (an admin's destination, here on
    loopback, like a local vLLM): so only an admin may make the server send one a request."""
    endpoint = EndpointFactory(base_url=devmodel.url, default_model=model_name)
    url = reverse("endpoints:test", args=[endpoint.pk])
    operator = logged_in(bob)
    assert operator.post(url, {"model": ""}, HTTP_HX_REQUEST="true").status_code == 403
    page = operator.get(reverse("endpoints:detail", args=[endpoint.pk])).content.decode()
    assert "Test connection</button>" not in page
    assert devmodel.requests(model_name) == []  # nothing reached the endpoint
    response = logged_in(alice).post(url, {"model": ""}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200 and 'data-check="ok"' in body and model_name in body
    assert len(devmodel.requests(model_name)) == 1  # the loopback address an admin set


def test_it_resets_the_breaker_from_the_page(bob):
    endpoint = EndpointFactory(breaker_state=BreakerState.OPEN, breaker_failures=7)
    response = logged_in(bob).post(reverse("endpoints:reset", args=[endpoint.pk]))
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.breaker_state == BreakerState.CLOSED
    page = logged_in(bob).get(reverse("endpoints:detail", args=[endpoint.pk])).content.decode()
    assert "reset by bob (was open, 7 failures)" in page
    assert BreakerTransition.objects.filter(endpoint=endpoint).count() == 1


def test_it_shows_the_breakers_window_and_rule(bob):
    endpoint = EndpointFactory()
    sessions = [uuid.uuid4(), uuid.uuid4()]
    for failed, source in ((True, sessions[0]), (True, sessions[0]), (True, sessions[1])):
        BreakerCall.objects.create(endpoint=endpoint, failed=failed, source=source)
    BreakerCall.objects.create(endpoint=endpoint, failed=False, source=uuid.uuid4())
    client = logged_in(bob)
    page = client.get(reverse("endpoints:detail", args=[endpoint.pk])).content.decode()
    assert "3 of 4 calls failed, from 2 conversations" in page
    assert "at least 10 calls in that window, 50% or more of them failing" in page
    listing = client.get(reverse("endpoints:list")).content.decode()
    assert "3 recent failures" in listing


def test_it_edits_prices_and_refuses_a_negative_one(alice, seeded_prices):
    client = logged_in(alice)
    page = client.get(reverse("endpoints:prices")).content.decode()
    assert 'data-price="gpt-4o"' in page and "2025-08-01" in page
    price = ModelPrice.objects.get(model="gpt-4o")
    response = client.post(
        reverse("endpoints:price", args=[price.pk]),
        {"model": "gpt-4o", "input_per_million": "-1", "output_per_million": "9"},
    )
    assert response.status_code == 400
    assert "cannot be negative" in str(response.context["form"].errors["input_per_million"])
    client.post(
        reverse("endpoints:price", args=[price.pk]),
        {
            "model": "gpt-4o",
            "input_per_million": "2.00",
            "output_per_million": "8.00",
            "as_of": "2026-11-01",
        },
    )
    price.refresh_from_db()
    assert str(price.input_per_million) == "2.0000" and str(price.as_of) == "2026-11-01"
    client.post(
        reverse("endpoints:prices"),
        {"model": "my-finetune", "input_per_million": "1", "output_per_million": "2"},
    )
    assert ModelPrice.objects.filter(model="my-finetune").exists()
