"""Model endpoints: test connection with the real client, breaker history and reset, prices."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db.models.functions import Now

from agentops.endpoints.services import endpoint_breaker_reset, endpoint_save, endpoint_test
from agentops.models import (
    AuditEntry,
    BreakerCall,
    BreakerState,
    BreakerTransition,
    ModelEndpoint,
)
from agentops.runtime import breaker
from tests.factories import EndpointFactory
from tracing.emit import Tracer
from tracing.models import ModelPrice
from tracing.platform.failures import Failure, FailureClass
from tracing.rollups import PriceBook

pytestmark = pytest.mark.django_db


def test_it_tests_a_connection_with_a_real_completion(devmodel, model_name):
    endpoint = EndpointFactory(base_url=devmodel.url, default_model=model_name)
    check = endpoint_test(endpoint=endpoint)
    assert check.ok, check.message
    assert check.model == model_name and check.reply and check.latency_ms >= 0
    assert len(devmodel.requests(model_name)) == 1
    # Not traffic: the breaker and its history stay as they were.
    assert not BreakerTransition.objects.exists()


def test_it_names_the_class_of_a_failing_endpoint():
    endpoint = EndpointFactory(base_url="http://127.0.0.1:9/v1")  # nothing listens there
    check = endpoint_test(endpoint=endpoint, model="any-model")
    assert not check.ok
    assert check.error_class == FailureClass.CONNECTION
    assert check.message and check.model == "any-model"


def test_it_reports_a_rejected_key_without_showing_it(devmodel, model_name):
    devmodel.script(model_name, api_key="the-right-key")
    endpoint = EndpointFactory(base_url=devmodel.url, default_model=model_name)
    endpoint_save(endpoint=endpoint, api_key="a-wrong-key-1234", actor=None)
    check = endpoint_test(endpoint=ModelEndpoint.objects.get(pk=endpoint.pk))
    assert not check.ok and check.error_class == FailureClass.AUTH
    assert "a-wrong-key-1234" not in check.message


def test_it_keeps_the_stored_key_unless_a_new_one_is_given(alice):
    endpoint = EndpointFactory()
    endpoint_save(endpoint=endpoint, api_key="sk-first-key", actor=alice)
    endpoint.default_model = "other"
    endpoint_save(endpoint=endpoint, api_key=None, actor=alice)
    assert ModelEndpoint.objects.get(pk=endpoint.pk).api_key == "sk-first-key"
    endpoint_save(endpoint=endpoint, api_key=None, clear_api_key=True, actor=alice)
    assert ModelEndpoint.objects.get(pk=endpoint.pk).api_key == ""
    entries = AuditEntry.objects.filter(action="endpoint.update", target=endpoint.name)
    assert entries.count() == 3
    assert "sk-first-key" not in str(list(entries.values_list("detail", flat=True)))


@pytest.fixture
def small_window(settings):  # type: ignore[no-untyped-def]
    """A breaker that opens on 2 calls of 2 conversations, all failing."""
    settings.BREAKER_MIN_CALLS, settings.BREAKER_MIN_SESSIONS = 2, 2
    settings.BREAKER_FAILURE_RATE_PERCENT, settings.BREAKER_WINDOW_SECONDS = 100, 60
    return settings


def test_it_records_breaker_transitions_and_resets(bob, small_window):
    endpoint = EndpointFactory(breaker_cooldown_seconds=0)
    tracers = [
        Tracer(uuid.uuid4(), session_id=uuid.uuid4(), secrets_to_redact=["sk-secret-in-error"])
        for _ in range(2)
    ]
    down = Failure(FailureClass.SERVER_ERROR, "500 from upstream sk-secret-in-error")
    for tracer in tracers:
        breaker.breaker_record_failure(endpoint=endpoint, failure=down, tracer=tracer)
    tracer = tracers[1]
    assert breaker.breaker_allows(endpoint=endpoint, tracer=tracer)  # cooldown 0: the probe
    breaker.breaker_record_failure(endpoint=endpoint, failure=down, tracer=tracer)
    history = list(BreakerTransition.objects.filter(endpoint=endpoint).order_by("id"))
    assert [t.state for t in history] == [
        BreakerState.OPEN,
        BreakerState.HALF_OPEN,
        BreakerState.OPEN,
    ]
    assert history[0].reason.startswith(
        "2 of 2 calls failed in 60 s, from 2 conversations; last: server_error"
    )
    assert history[0].failures == 2
    assert history[2].reason.startswith("the half-open probe failed")
    assert all(t.trace_id == tracer.trace_id for t in history)
    assert "sk-secret-in-error" not in history[0].reason

    endpoint_breaker_reset(endpoint=endpoint, actor=bob)
    endpoint.refresh_from_db()
    assert endpoint.breaker_state == BreakerState.CLOSED and endpoint.breaker_failures == 0
    assert breaker.breaker_window(endpoint=endpoint).calls == 0  # a new window
    reset = BreakerTransition.objects.filter(endpoint=endpoint).first()
    assert reset is not None and reset.state == BreakerState.CLOSED and reset.actor == bob
    assert "reset by bob" in reset.reason
    assert AuditEntry.objects.filter(action="endpoint.breaker_reset", actor=bob).exists()


def test_it_records_the_breaker_closing_after_a_success(small_window):
    endpoint = EndpointFactory(breaker_cooldown_seconds=0)
    tracer = Tracer(uuid.uuid4())
    for _ in range(2):  # two traces of their own (no conversation): two sources
        breaker.breaker_record_failure(
            endpoint=endpoint,
            failure=Failure(FailureClass.TIMEOUT, "slow"),
            tracer=Tracer(uuid.uuid4()),
        )
    assert breaker.breaker_allows(endpoint=endpoint, tracer=tracer)
    breaker.breaker_record_success(endpoint=endpoint, tracer=tracer)
    states = list(
        BreakerTransition.objects.filter(endpoint=endpoint)
        .order_by("id")
        .values_list("state", flat=True)
    )
    assert states == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    assert breaker.breaker_window(endpoint=endpoint).calls == 0  # the failures are spent


def test_it_opens_the_breaker_only_on_evidence_that_the_endpoint_is_down():
    """Defaults: 10 calls in 60 s, half failing, from 3 conversations."""
    endpoint = EndpointFactory()
    down = Failure(FailureClass.SERVER_ERROR, "HTTP 500", status_code=500)

    def fail(session_id: uuid.UUID, failure: Failure = down) -> None:
        tracer = Tracer(uuid.uuid4(), session_id=session_id)
        breaker.breaker_record_failure(endpoint=endpoint, failure=failure, tracer=tracer)

    def state() -> str:
        endpoint.refresh_from_db()
        return endpoint.breaker_state

    poisoned = uuid.uuid4()
    for _ in range(30):  # one conversation the endpoint refuses, however often
        fail(poisoned)
    assert state() == BreakerState.CLOSED
    refused = Failure(FailureClass.INVALID_REQUEST, "HTTP 400", status_code=400)
    overflow = Failure(FailureClass.CONTEXT_OVERFLOW, "HTTP 400", status_code=400)
    for _ in range(30):  # 4xx other than 408/429 never count, from any number of sessions
        fail(uuid.uuid4(), refused)
        fail(uuid.uuid4(), overflow)
    assert breaker.breaker_window(endpoint=endpoint).failures == 30
    assert state() == BreakerState.CLOSED
    # Many successes: failures from several conversations stay under the rate.
    ok = Tracer(uuid.uuid4(), session_id=uuid.uuid4())
    for _ in range(40):
        breaker.breaker_record_success(endpoint=endpoint, tracer=ok)
    fail(uuid.uuid4())
    fail(uuid.uuid4(), Failure(FailureClass.RATE_LIMIT, "HTTP 429", status_code=429))
    assert state() == BreakerState.CLOSED
    # Past the window those calls weigh nothing; a 408 from a third conversation opens it.
    BreakerCall.objects.filter(endpoint=endpoint).update(at=Now() - timedelta(seconds=61))
    for _ in range(8):
        fail(uuid.uuid4())
    assert state() == BreakerState.CLOSED  # 8 calls: under the minimum of 10
    fail(uuid.uuid4())
    fail(uuid.uuid4(), Failure(FailureClass.SERVER_ERROR, "HTTP 408", status_code=408))
    assert state() == BreakerState.OPEN
    opened = BreakerTransition.objects.get(endpoint=endpoint)
    assert opened.reason.startswith("10 of 10 calls failed in 60 s, from 10 conversations")


def test_it_seeds_prices_of_well_known_models_with_their_date(seeded_prices):
    book = PriceBook()
    for model in ("gpt-4o", "gpt-4o-mini", "gpt-4.1-nano", "o3", "o4-mini", "claude-sonnet-4"):
        assert book.price(model) is not None, model
    assert book.price("gpt-4o-2024-08-06").model == "gpt-4o"
    assert book.price("gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"
    assert book.price("o3-mini").model == "o3-mini"
    assert book.cost("gpt-4o", 1_000_000, 1_000_000) == Decimal("12.50")
    assert ModelPrice.objects.get(model="gpt-4.1").as_of == date(2025, 8, 1)
