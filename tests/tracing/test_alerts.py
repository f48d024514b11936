"""Alert rules judged on the rollups: fire, resolve, webhook, history, ops stream."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.utils import timezone

from tests.tracing.helpers import Receiver, fixed_runs
from tracing.alerts import alert_value, alerts_evaluate
from tracing.models import AlertEvent, AlertRule, ModelPrice
from tracing.platform.live import wait_sent
from tracing.rollups import rollup_metrics


@pytest.fixture
def receiver(settings):
    settings.TOOL_EGRESS_ALLOWLIST = ["127.0.0.1/32"]  # webhooks go through the egress guard
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def rolled(db):
    ModelPrice.objects.create(model="gpt-x", input_per_million=1, output_per_million=2)
    fixed_runs(timezone.now() - timedelta(minutes=5))
    rollup_metrics(settle_seconds=0)


@pytest.mark.parametrize(
    ("metric", "agent", "expected"),
    [
        ("error_rate", "", 1 / 4),  # A2 failed of A1, A2, A3, B1
        ("error_rate", "alpha", 1 / 3),
        ("handoff_rate", "", 1 / 4),  # A3
        ("cost", "", 0.00049),
        ("no_runs", "", 8.0),  # 4 starts + 4 endings
    ],
)
def test_it_measures_each_alert_metric_from_the_rollups(rolled, metric, agent, expected):
    rule = AlertRule(name="r", metric=metric, agent=agent, window_minutes=30)
    assert alert_value(rule=rule) == pytest.approx(expected)


def test_it_reads_p95_latency_and_needs_enough_runs(rolled):
    value = alert_value(rule=AlertRule(name="p95", metric="p95_latency", window_minutes=30))
    assert 3000 <= value < 3000 * 2**0.25  # the slowest of four runs took 3000 ms
    assert (
        alert_value(rule=AlertRule(name="few", metric="error_rate", window_minutes=30, min_runs=5))
        is None
    )
    old = AlertRule(name="old", metric="error_rate", window_minutes=1)
    assert alert_value(rule=old, now=timezone.now() + timedelta(hours=1)) is None


def test_it_fires_then_resolves_calling_the_webhook_each_time(rolled, receiver):
    rule = AlertRule.objects.create(
        name="errors",
        metric="error_rate",
        threshold=0.2,
        window_minutes=30,
        webhook_url=receiver.url + "/hook",
    )
    (fired,) = alerts_evaluate()
    rule.refresh_from_db()
    assert rule.firing and rule.last_value == pytest.approx(0.25)
    assert (fired.state, fired.webhook_status, fired.webhook_error) == ("firing", 200, "")
    path, headers, body = receiver.requests[0]
    payload = json.loads(body)
    assert path == "/hook" and headers["content-type"] == "application/json"
    assert (
        payload["alert"] == "errors"
        and payload["state"] == "firing"
        and payload["value"] == pytest.approx(0.25)
    )
    assert alerts_evaluate() == []  # still firing: nothing new
    rule.threshold = 0.5
    rule.save()
    (resolved,) = alerts_evaluate()
    assert (
        resolved.state == "resolved" and json.loads(receiver.requests[1][2])["state"] == "resolved"
    )
    assert list(AlertEvent.objects.filter(rule=rule).values_list("state", flat=True)) == [
        "resolved",
        "firing",
    ]
    rule.refresh_from_db()
    assert not rule.firing


def test_it_fires_when_no_runs_happen(db, receiver):
    AlertRule.objects.create(name="silence", metric="no_runs", window_minutes=5)
    (event,) = alerts_evaluate()
    assert (
        event.state == "firing"
        and event.value == 0
        and "no runs in the last 5 min" in event.message
    )
    assert event.webhook_status is None  # no webhook configured


def test_it_keeps_the_event_and_the_reason_when_the_webhook_fails(rolled, settings):
    settings.TOOL_EGRESS_ALLOWLIST = ["127.0.0.1/32"]
    failing = Receiver(status=500)
    try:
        AlertRule.objects.create(
            name="a", metric="cost", threshold=0.0001, window_minutes=30, webhook_url=failing.url
        )
        (event,) = alerts_evaluate()
    finally:
        failing.stop()
    assert event.webhook_status == 500 and event.webhook_error == "HTTP 500"
    closed_port = failing.url  # the server is gone: connection refused
    AlertRule.objects.create(
        name="b", metric="handoff_rate", threshold=0.1, window_minutes=30, webhook_url=closed_port
    )
    (event,) = alerts_evaluate()
    assert event.webhook_status is None and "ConnectError" in event.webhook_error
    assert AlertEvent.objects.count() == 2


def test_it_refuses_a_webhook_to_an_address_outside_the_egress_allowlist(
    rolled, receiver, settings
):
    settings.TOOL_EGRESS_ALLOWLIST = []
    for i, url in enumerate([receiver.url, receiver.url.replace("127.0.0.1", "localhost")]):
        AlertRule.objects.create(
            name=f"r{i}", metric="cost", threshold=0.0001, window_minutes=30, webhook_url=url
        )
    events = alerts_evaluate()
    assert len(events) == 2
    for event in events:
        assert event.webhook_status is None
        assert event.webhook_error.startswith("EgressDenied: Refused to connect")
        assert "a loopback address" in event.webhook_error
    assert receiver.requests == []


def test_it_sends_webhooks_directly_whatever_the_proxy_settings(rolled, receiver, monkeypatch):
    proxy = Receiver()
    try:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url)
        AlertRule.objects.create(
            name="a", metric="cost", threshold=0.0001, window_minutes=30, webhook_url=receiver.url
        )
        (event,) = alerts_evaluate()
    finally:
        proxy.stop()
    assert event.webhook_status == 200 and len(receiver.requests) == 1
    assert proxy.requests == []


def test_it_resolves_a_firing_rule_that_was_disabled(rolled):
    rule = AlertRule.objects.create(
        name="errors", metric="error_rate", threshold=0.1, window_minutes=30
    )
    alerts_evaluate()
    AlertRule.objects.filter(pk=rule.pk).update(enabled=False)
    (event,) = alerts_evaluate()
    assert event.state == "resolved"


def test_it_announces_alerts_on_the_ops_stream(transactional_db):
    AlertRule.objects.create(name="silence", metric="no_runs", window_minutes=5)

    async def main():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add("ops", channel)  # a member once this returns
        await asyncio.to_thread(alerts_evaluate)
        await asyncio.to_thread(wait_sent)
        message = await asyncio.wait_for(layer.receive(channel), 5)
        await layer.group_discard("ops", channel)
        return message

    message = asyncio.run(main())
    assert message["type"] == "live.event"
    assert message["event"]["kind"] == "alert.firing" and message["event"]["alert"] == "silence"
