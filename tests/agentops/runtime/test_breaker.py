"""The circuit breaker opens on evidence that an endpoint is down, never on one conversation
the endpoint refuses: a real concurrent worker, the dev model over HTTP, default settings
(10 calls in 60 s, half of them failing, from 3 conversations)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection, transaction

from agentops.models import BreakerCall, BreakerState, BreakerTransition, ModelEndpoint, RunStatus
from agentops.runtime.breaker import breaker_record_success, breaker_window
from agentops.testing.processes import CONCURRENT_WORKER, Proc, child_env, start_worker
from tests.agentops.runtime.helpers import runs_post, span_names, wait_for_run, wait_for_success
from tests.kit import until
from tracing.emit import Tracer

pytestmark = pytest.mark.django_db(transaction=True)

POISON = "[[fault:500]] tell me about my order"
LATE = "a new conversation while the endpoint is down"


@pytest.fixture(scope="module")
def concurrent_worker(django_db_setup) -> Iterator[Proc]:  # type: ignore[no-untyped-def]
    proc = start_worker(child_env(), name="breaker", worker_class=CONCURRENT_WORKER)
    yield proc
    proc.stop()


def breaker_state(endpoint: ModelEndpoint) -> str:
    endpoint.refresh_from_db()
    return endpoint.breaker_state


def wait_for_opening(endpoint: ModelEndpoint, timeout: float = 60.0) -> BreakerTransition:
    """The transition that opened the endpoint's breaker (written just after its state)."""
    opened = BreakerTransition.objects.filter(endpoint=endpoint, state=BreakerState.OPEN)
    until(opened.exists, seconds=timeout, message=f"the breaker of {endpoint.name} never opened")
    return opened.get()


def test_one_poisoned_conversation_fails_alone_and_others_never_see_the_breaker(
    concurrent_worker, dev_agent, devmodel, model_name
):
    """Its request fails every time: it exhausts its own retries (8, more than the 5 failures
    in a row that used to open the breaker) while 20 conversations on the same endpoint,
    during and after it, succeed and never meet an open breaker."""
    dev_agent.retry_max_attempts = 8
    dev_agent.save()
    [poisoned] = runs_post(dev_agent, POISON, 1)
    during = runs_post(dev_agent, "Hi", 10)
    poisoned_run = wait_for_run(poisoned)
    after = runs_post(dev_agent, "Hi", 10)
    wait_for_success(during + after)

    assert poisoned_run.status in (RunStatus.FAILED, RunStatus.HANDED_OFF)
    assert poisoned_run.error_class == "server_error"
    tries = [r for r in devmodel.requests(model_name) if r["last"]["content"] == POISON]
    assert len(tries) == 8  # retried to exhaustion, never cut short by a breaker
    endpoint = dev_agent.endpoint
    assert breaker_state(endpoint) == BreakerState.CLOSED
    assert not BreakerTransition.objects.filter(endpoint=endpoint).exists()
    window = breaker_window(endpoint=endpoint)
    assert window.failures >= 8 and window.failing_sources == 1  # seen, and weighed as one
    for run_id in during + after:
        assert "run.wait" not in span_names(run_id) and "fallback" not in span_names(run_id)


def test_a_real_outage_still_opens_the_breaker(concurrent_worker, dev_agent, devmodel, model_name):
    """Every request from several conversations fails: the breaker opens, and a new
    conversation's request no longer reaches the endpoint."""
    dev_agent.retry_max_attempts = 3
    dev_agent.save()
    devmodel.script(model_name, faults=[{"status": 503}] * 12)
    runs_post(dev_agent, "Hi", 4)  # 4 conversations x 3 attempts: 12 calls, all failing
    endpoint = dev_agent.endpoint
    opened = wait_for_opening(endpoint)
    assert breaker_state(endpoint) == BreakerState.OPEN
    assert "calls failed in 60 s, from" in opened.reason and "server_error" in opened.reason
    assert opened.failures >= 10
    [late] = runs_post(dev_agent, LATE, 1)
    late_run = wait_for_run(late, statuses={RunStatus.WAITING})
    assert "circuit breaker is open" in late_run.wait_reason
    # Kept out, not retried. Counted by its own text: the first conversations' attempts
    # admitted just before the opening may still be landing.
    assert not [r for r in devmodel.requests(model_name) if r["last"]["content"] == LATE]


def test_a_refused_request_never_counts(concurrent_worker, dev_agent, devmodel, model_name):
    """A 400 says the request is wrong, not that the endpoint is down: twelve conversations
    refused with one each leave the breaker closed and its window without a failure."""
    devmodel.script(model_name, faults=[{"status": 400}] * 12)
    refused = runs_post(dev_agent, "Hi", 12)
    for run_id in refused:
        run = wait_for_run(run_id)
        assert run.status in (RunStatus.FAILED, RunStatus.HANDED_OFF)
        assert run.error_class == "invalid_request"
    endpoint = dev_agent.endpoint
    assert breaker_state(endpoint) == BreakerState.CLOSED
    assert breaker_window(endpoint=endpoint).failures == 0
    assert not BreakerTransition.objects.filter(endpoint=endpoint).exists()


def rows_seen_elsewhere(endpoint: ModelEndpoint) -> int:
    """The endpoint's window rows as another worker's connection sees them now."""
    seen: list[int] = []

    def count() -> None:
        try:
            seen.append(BreakerCall.objects.filter(endpoint=endpoint).count())
        finally:
            connection.close()

    reader = threading.Thread(target=count)
    reader.start()
    reader.join()
    return seen[0]


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


def test_a_calls_row_is_seen_by_every_worker_at_once_and_relaxes_only_itself(dev_agent):
    """A call's row is committed without waiting for the disk, yet visible to every other
    connection the moment it is counted (the window is read as before); the relaxed commit
    is the row's own, never the connection's nor the caller's transaction's."""
    endpoint = dev_agent.endpoint
    tracer = Tracer(uuid.uuid4())
    breaker_record_success(endpoint=endpoint, tracer=tracer)
    assert rows_seen_elsewhere(endpoint) == 1
    assert synchronous_commit() == "on"
    with transaction.atomic():
        breaker_record_success(endpoint=endpoint, tracer=tracer)
        assert synchronous_commit() == "on"  # inside a transaction: the caller's commit rules
    assert rows_seen_elsewhere(endpoint) == 2
    assert breaker_window(endpoint=endpoint).calls == 2
