"""A circuit breaker per model endpoint, kept in Postgres so every worker shares it.

It opens on evidence that the endpoint is down, not on one request it refuses (the way
resilience4j's time window does): over the last BREAKER_WINDOW_SECONDS at least
BREAKER_MIN_CALLS calls, of which BREAKER_FAILURE_RATE_PERCENT failed as an outage fails,
from BREAKER_MIN_SESSIONS distinct conversations. A conversation whose request fails alone
while others succeed exhausts its own retries and fails (or hands off) that run only.
Every call's outcome is a `BreakerCall` row, committed without waiting for the disk
(`breaker_call_record`); transitions are conditional UPDATEs (many workers may race, one wins
each) recorded as `BreakerTransition` rows.

An open breaker is never retried: `model_client.model_call_guarded`, the one way to call a
model, asks the breaker before every attempt and moves on to the next candidate at once when
it says no (`BreakerOpen` is not transient either, so no `retry_call` would retry it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count, OuterRef, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from agentops.models import BreakerCall, BreakerState, BreakerTransition, ModelEndpoint
from tracing.emit import Tracer
from tracing.platform.failures import Failure, FailureClass

COUNTED = {
    FailureClass.RATE_LIMIT,
    FailureClass.TIMEOUT,
    FailureClass.CONNECTION,
    FailureClass.SERVER_ERROR,
}
STATE_FIELDS = ["breaker_state", "breaker_failures", "breaker_opened_at"]


class BreakerOpen(Failure):
    """The endpoint's circuit breaker keeps calls out: on to the next endpoint, no retry."""

    def __init__(self, endpoint: ModelEndpoint) -> None:
        super().__init__(FailureClass.SERVER_ERROR, f"circuit breaker open for {endpoint.name}")
        self.reopens_in = breaker_reopens_in(endpoint=endpoint)

    @property
    def transient(self) -> bool:
        return False  # waiting for the cooldown is the caller's choice, never a retry loop


def failure_counts(failure: Failure) -> bool:
    """Does this failure say the endpoint is down? A 5xx, 408, 429, timeout or lost
    connection does; any other 4xx (a refused request, a bad key, a context too long) is
    about the request, and neither is a malformed reply."""
    if isinstance(failure, BreakerOpen) or failure.failure_class not in COUNTED:
        return False
    status = failure.status_code
    return status is None or status >= 500 or status in (408, 429)


@dataclass(frozen=True)
class BreakerRule:
    """When an endpoint counts as down (settings: BREAKER_*)."""

    window_seconds: int
    min_calls: int
    failure_rate_percent: int
    min_sessions: int


def breaker_rule() -> BreakerRule:
    return BreakerRule(
        window_seconds=settings.BREAKER_WINDOW_SECONDS,
        min_calls=settings.BREAKER_MIN_CALLS,
        failure_rate_percent=settings.BREAKER_FAILURE_RATE_PERCENT,
        min_sessions=settings.BREAKER_MIN_SESSIONS,
    )


@dataclass(frozen=True)
class BreakerWindow:
    """The calls an endpoint's breaker weighs now, under `rule`."""

    rule: BreakerRule
    calls: int
    failures: int
    failing_sources: int

    @property
    def shows_outage(self) -> bool:
        return (
            self.calls >= self.rule.min_calls
            and 100 * self.failures >= self.rule.failure_rate_percent * self.calls
            and self.failing_sources >= self.rule.min_sessions
        )

    def describe(self) -> str:
        sources = self.failing_sources
        return (
            f"{self.failures} of {self.calls} calls failed in {self.rule.window_seconds} s, "
            f"from {sources} conversation{'s' if sources != 1 else ''}"
        )


def window_calls(*, endpoint_id: int | OuterRef) -> QuerySet[BreakerCall]:
    """The calls in an endpoint's window now (`endpoint_id` may be an OuterRef)."""
    since = Now() - timedelta(seconds=settings.BREAKER_WINDOW_SECONDS)
    return BreakerCall.objects.filter(endpoint_id=endpoint_id, at__gte=since)


def breaker_window(*, endpoint: ModelEndpoint) -> BreakerWindow:
    counts = window_calls(endpoint_id=endpoint.pk).aggregate(
        calls=Count("id"),
        failures=Count("id", filter=Q(failed=True)),
        failing_sources=Count("source", filter=Q(failed=True), distinct=True),
    )
    return BreakerWindow(rule=breaker_rule(), **counts)


def breaker_window_prune() -> int:
    """Forget calls no window reads any more (a periodic job: agentops/cron.py)."""
    cutoff = Now() - timedelta(seconds=settings.BREAKER_WINDOW_SECONDS)
    deleted, _ = BreakerCall.objects.filter(at__lt=cutoff).delete()
    return deleted


def breaker_window_clear(*, endpoint: ModelEndpoint) -> None:
    """A closed breaker starts a new window: the failures that opened it are spent."""
    BreakerCall.objects.filter(endpoint_id=endpoint.pk).delete()


def breaker_admit(*, endpoint: ModelEndpoint, tracer: Tracer, refresh: bool = True) -> None:
    """Raise BreakerOpen unless a call may go to this endpoint now. `model_call` asks this
    before every call, so every caller honours the same rule."""
    if not breaker_allows(endpoint=endpoint, tracer=tracer, refresh=refresh):
        raise BreakerOpen(endpoint)


def breaker_allows(*, endpoint: ModelEndpoint, tracer: Tracer, refresh: bool = True) -> bool:
    """May a call go to this endpoint now? Takes the half-open probe when the cooldown is over.
    `refresh=False` trusts the state the caller loaded a moment ago."""
    if refresh:
        endpoint.refresh_from_db(fields=STATE_FIELDS)
    if endpoint.breaker_state == BreakerState.CLOSED:
        return True
    now = timezone.now()
    cooled = now - timedelta(seconds=endpoint.breaker_cooldown_seconds)
    took_probe = ModelEndpoint.objects.filter(
        Q(pk=endpoint.pk, breaker_opened_at__lte=cooled)
        & Q(breaker_state__in=[BreakerState.OPEN, BreakerState.HALF_OPEN])
    ).update(breaker_state=BreakerState.HALF_OPEN, breaker_opened_at=now)
    if took_probe:
        endpoint.breaker_state, endpoint.breaker_opened_at = BreakerState.HALF_OPEN, now
        tracer.event("breaker.half_open", endpoint=endpoint.name)
        transition_record(
            endpoint=endpoint,
            state=BreakerState.HALF_OPEN,
            reason="cooldown over: one probe call let through",
            tracer=tracer,
        )
        return True
    if not refresh:  # the state we trusted may be stale: a breaker closed since lets us in
        endpoint.refresh_from_db(fields=STATE_FIELDS)
        return endpoint.breaker_state == BreakerState.CLOSED
    return False


def breaker_reopens_in(*, endpoint: ModelEndpoint) -> float:
    if endpoint.breaker_opened_at is None:
        return 0.0
    remaining = (
        endpoint.breaker_opened_at - timezone.now()
    ).total_seconds() + endpoint.breaker_cooldown_seconds
    return max(0.0, remaining)


def call_source(tracer: Tracer) -> uuid.UUID:
    """Who made a call: its conversation, or its trace when it has none (a judge, the
    playground)."""
    return tracer.session_id or tracer.trace_id


def breaker_call_record(*, endpoint: ModelEndpoint, failed: bool, tracer: Tracer) -> None:
    """One call's row in the endpoint's window. Outside a transaction it is committed without
    waiting for the disk (synchronous_commit off for this one statement): every worker sees it
    at once, as the window needs, and only a crash of Postgres itself could forget the last
    fraction of a second of rows, which a window of a minute does not miss. Waiting for the
    disk cost 1-4 ms a model call; the row itself, a tenth of a millisecond."""
    source = call_source(tracer)
    if connection.in_atomic_block:  # the caller's transaction commits it, as it commits
        BreakerCall.objects.create(endpoint_id=endpoint.pk, failed=failed, source=source)
        return
    table = connection.ops.quote_name(BreakerCall._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)) "  # noqa: S608 - {table} is our table's name
            f"INSERT INTO {table} (endpoint_id, failed, source) "
            "SELECT %s, %s, %s FROM relaxed",
            [endpoint.pk, failed, source],
        )


def breaker_record_success(*, endpoint: ModelEndpoint, tracer: Tracer) -> None:
    breaker_call_record(endpoint=endpoint, failed=False, tracer=tracer)
    if endpoint.breaker_state == BreakerState.CLOSED:
        return
    # The half-open probe succeeded: the endpoint answers again. (A call let in before the
    # breaker opened proves nothing about now.)
    closed = ModelEndpoint.objects.filter(
        pk=endpoint.pk, breaker_state=BreakerState.HALF_OPEN
    ).update(breaker_state=BreakerState.CLOSED, breaker_failures=0, breaker_opened_at=None)
    if not closed:
        return
    endpoint.breaker_state, endpoint.breaker_failures = BreakerState.CLOSED, 0
    endpoint.breaker_opened_at = None
    breaker_window_clear(endpoint=endpoint)
    tracer.event("breaker.closed", endpoint=endpoint.name)
    transition_record(
        endpoint=endpoint,
        state=BreakerState.CLOSED,
        reason="the half-open probe succeeded",
        tracer=tracer,
    )


def breaker_record_failure(*, endpoint: ModelEndpoint, failure: Failure, tracer: Tracer) -> None:
    if not failure_counts(failure):
        return
    breaker_call_record(endpoint=endpoint, failed=True, tracer=tracer)
    endpoint.refresh_from_db(fields=STATE_FIELDS)
    if endpoint.breaker_state == BreakerState.OPEN:
        return
    if endpoint.breaker_state == BreakerState.HALF_OPEN:
        failures, was = endpoint.breaker_failures, "the half-open probe failed"
    else:
        window = breaker_window(endpoint=endpoint)
        if not window.shows_outage:
            return
        failures, was = window.failures, window.describe()
    opened = ModelEndpoint.objects.filter(
        pk=endpoint.pk, breaker_state=endpoint.breaker_state
    ).update(
        breaker_state=BreakerState.OPEN, breaker_opened_at=timezone.now(), breaker_failures=failures
    )
    if not opened:
        return  # another worker moved it first
    endpoint.breaker_failures = failures
    tracer.event(
        "breaker.open",
        endpoint=endpoint.name,
        failures=failures,
        **{"error.type": failure.failure_class.value},
    )
    transition_record(
        endpoint=endpoint,
        state=BreakerState.OPEN,
        reason=f"{was}; last: {failure.failure_class.value}: {tracer.redact(str(failure))[:200]}",
        tracer=tracer,
    )
    endpoint.breaker_state = BreakerState.OPEN


def transition_record(
    *, endpoint: ModelEndpoint, state: str, reason: str, tracer: Tracer
) -> BreakerTransition:
    """The endpoint's breaker history (the endpoint page), beside the run's trace event."""
    return BreakerTransition.objects.create(
        endpoint=endpoint,
        state=state,
        reason=reason[:300],
        failures=endpoint.breaker_failures,
        trace_id=tracer.trace_id,
    )
