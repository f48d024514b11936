"""`/webhooks/`: admins only; endpoints, deliveries with status and response, send again."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agentops.models import AuditEntry
from agentops.runtime.services import session_create
from agentops.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookEndpoint
from agentops.webhooks.services import webhook_endpoint_create
from tests.factories import AgentFactory
from tests.kit import until


def client_for(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_it_is_for_admins_only(alice, bob, charlie):
    endpoint, _ = webhook_endpoint_create(
        url="https://hooks.example.com/a", event_types=["run.failed"]
    )
    url = reverse("webhooks:index")
    assert client_for(alice).get(url).status_code == 200
    for user in (bob, charlie):
        client = client_for(user)
        assert client.get(url).status_code == 403
        assert (
            client.post(
                url, {"url": "https://x.example.com", "event_types": ["run.failed"]}
            ).status_code
            == 403
        )
        assert (
            client.post(reverse("webhooks:endpoint_delete", args=[endpoint.pk])).status_code == 403
        )
        assert (
            client.post(
                reverse("webhooks:endpoint_enable", args=[endpoint.pk]), {"enabled": "0"}
            ).status_code
            == 403
        )
    assert Client().get(url).status_code == 302  # to the login page
    assert WebhookEndpoint.objects.filter(enabled=True).count() == 1
    assert "Webhooks" in client_for(alice).get(reverse("home")).content.decode()
    assert reverse("webhooks:index") not in client_for(bob).get(reverse("home")).content.decode()


@pytest.mark.django_db
def test_it_adds_an_endpoint_and_shows_its_secret_once(alice, settings):
    client = client_for(alice)
    url = reverse("webhooks:index")
    response = client.post(
        url,
        {
            "url": "https://hooks.example.com/agentops",
            "description": "CRM",
            "event_types": ["message.created", "handoff.created"],
        },
    )
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.event_types == ["handoff.created", "message.created"]
    page = response.content.decode()
    assert endpoint.secret in page and endpoint.secret.startswith("whsec_")
    assert endpoint.secret not in client.get(url).content.decode()  # shown once
    assert AuditEntry.objects.filter(action="webhook.create").exists()

    settings.DEBUG = False
    refused = client.post(url, {"url": "http://hooks.example.com/", "event_types": ["run.failed"]})
    assert refused.status_code == 400 and "Use an https:// address." in refused.content.decode()
    refused = client.post(url, {"url": "https://hooks.example.com/", "event_types": []})
    assert refused.status_code == 400
    refused = client.post(url, {"url": "https://hooks.example.com/", "event_types": ["nope"]})
    assert refused.status_code == 400
    assert WebhookEndpoint.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_it_lists_deliveries_and_sends_one_again(alice, receiver, hook_worker):
    receiver.statuses = [500, 200]
    webhook_endpoint_create(url=receiver.url, event_types=["session.created"])
    session_create(agent=AgentFactory())
    receiver.wait(1)
    delivery = until(lambda: WebhookDelivery.objects.exclude(error="").first())
    client = client_for(alice)
    page = client.get(reverse("webhooks:index")).content.decode()
    assert f'id="delivery-{delivery.pk}"' in page
    assert "HTTP 500" in page and "boom: the receiver is down" in page
    assert "session.created" in page and delivery.event_id in page
    assert "failing since" in page

    response = client.post(reverse("webhooks:delivery_resend", args=[delivery.pk]))
    assert response.status_code == 302
    requests = receiver.wait(2)
    assert requests[0][0]["webhook-id"] == requests[1][0]["webhook-id"] == delivery.event_id
    delivery = until(
        lambda: WebhookDelivery.objects.filter(status=DeliveryStatus.SUCCEEDED).first()
    )
    assert delivery.attempts == 1
    filtered = client.get(reverse("webhooks:index"), {"status": "failed"}).content.decode()
    assert f'id="delivery-{delivery.pk}"' not in filtered
    assert AuditEntry.objects.filter(action="webhook.resend").exists()


@pytest.mark.django_db
def test_it_alerts_admins_to_a_disabled_endpoint_and_lets_them_enable_it(alice, bob):
    endpoint, _ = webhook_endpoint_create(
        url="https://hooks.example.com/down", event_types=["run.failed"]
    )
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=False,
        disabled_at=timezone.now(),
        disabled_reason="every delivery attempt failed since 2026-11-25 10:00 UTC (last: HTTP 503)",
    )
    home = client_for(alice).get(reverse("home")).content.decode()
    assert 'id="webhooks-disabled"' in home and "https://hooks.example.com/down" in home
    assert 'id="webhooks-disabled"' not in client_for(bob).get(reverse("home")).content.decode()

    client = client_for(alice)
    assert "last: HTTP 503" in client.get(reverse("webhooks:index")).content.decode()
    client.post(reverse("webhooks:endpoint_enable", args=[endpoint.pk]), {"enabled": "1"})
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.disabled_reason == "" and endpoint.failing_since is None
    assert 'id="webhooks-disabled"' not in client.get(reverse("home")).content.decode()
    # Turned off by an admin: no alert.
    client.post(reverse("webhooks:endpoint_enable", args=[endpoint.pk]), {"enabled": "0"})
    assert 'id="webhooks-disabled"' not in client.get(reverse("home")).content.decode()
    client.post(reverse("webhooks:endpoint_delete", args=[endpoint.pk]))
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.django_db
def test_it_refuses_to_send_again_to_a_disabled_endpoint(alice):
    endpoint, _ = webhook_endpoint_create(
        url="https://hooks.example.com/a", event_types=["session.created"]
    )
    session_create(agent=AgentFactory())
    delivery = WebhookDelivery.objects.get()
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    response = client_for(alice).post(
        reverse("webhooks:delivery_resend", args=[delivery.pk]), follow=True
    )
    assert "the endpoint is disabled: enable it first" in response.content.decode()
