"""A circuit breaker per model endpoint, kept in Postgres so every worker shares it.

Transitions are conditional UPDATEs: many workers may race, one wins each transition.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import F, Q
from django.utils import timezone

from agentops.models import BreakerState, BreakerTransition, ModelEndpoint
from tracing.emit import Tracer
from tracing.failures import Failure, FailureClass

COUNTED = {
    FailureClass.RATE_LIMIT,
    FailureClass.TIMEOUT,
    FailureClass.CONNECTION,
    FailureClass.SERVER_ERROR,
}


class BreakerOpen(Failure):
    """The endpoint's circuit breaker keeps calls out: on to the next endpoint, no retry."""

    def __init__(self, endpoint: ModelEndpoint) -> None:
        super().__init__(FailureClass.SERVER_ERROR, f"circuit breaker open for {endpoint.name}")


def breaker_allows(*, endpoint: ModelEndpoint, tracer: Tracer, refresh: bool = True) -> bool:
    """May a call go to this endpoint now? Takes the half-open probe when the cooldown is over.
    `refresh=False` trusts the state the caller loaded a moment ago."""
    if refresh:
        endpoint.refresh_from_db(fields=["breaker_state", "breaker_failures", "breaker_opened_at"])
    if endpoint.breaker_state == BreakerState.CLOSED:
        return True
    now = timezone.now()
    cooled = now - timedelta(seconds=endpoint.breaker_cooldown_seconds)
    took_probe = ModelEndpoint.objects.filter(
        Q(pk=endpoint.pk, breaker_opened_at__lte=cooled)
        & Q(breaker_state__in=[BreakerState.OPEN, BreakerState.HALF_OPEN])
    ).update(breaker_state=BreakerState.HALF_OPEN, breaker_opened_at=now)
    if took_probe:
        tracer.event("breaker.half_open", endpoint=endpoint.name)
        transition_record(
            endpoint=endpoint,
            state=BreakerState.HALF_OPEN,
            reason="cooldown over: one probe call let through",
            tracer=tracer,
        )
        return True
    return False


def breaker_reopens_in(*, endpoint: ModelEndpoint) -> float:
    if endpoint.breaker_opened_at is None:
        return 0.0
    remaining = (
        endpoint.breaker_opened_at - timezone.now()
    ).total_seconds() + endpoint.breaker_cooldown_seconds
    return max(0.0, remaining)


def breaker_record_success(*, endpoint: ModelEndpoint, tracer: Tracer) -> None:
    if endpoint.breaker_state == BreakerState.CLOSED and endpoint.breaker_failures == 0:
        return
    closed = (
        ModelEndpoint.objects.filter(pk=endpoint.pk)
        .exclude(breaker_state=BreakerState.CLOSED, breaker_failures=0)
        .update(breaker_state=BreakerState.CLOSED, breaker_failures=0, breaker_opened_at=None)
    )
    if closed and endpoint.breaker_state != BreakerState.CLOSED:
        tracer.event("breaker.closed", endpoint=endpoint.name)
        transition_record(
            endpoint=endpoint,
            state=BreakerState.CLOSED,
            reason=f"a call succeeded while {endpoint.get_breaker_state_display()}",
            tracer=tracer,
        )
    endpoint.breaker_state, endpoint.breaker_failures = BreakerState.CLOSED, 0


def breaker_record_failure(*, endpoint: ModelEndpoint, failure: Failure, tracer: Tracer) -> None:
    if failure.failure_class not in COUNTED:
        return
    ModelEndpoint.objects.filter(pk=endpoint.pk).update(breaker_failures=F("breaker_failures") + 1)
    endpoint.refresh_from_db(fields=["breaker_state", "breaker_failures", "breaker_opened_at"])
    should_open = endpoint.breaker_state == BreakerState.HALF_OPEN or (
        endpoint.breaker_state == BreakerState.CLOSED
        and endpoint.breaker_failures >= endpoint.breaker_threshold
    )
    if should_open:
        opened = ModelEndpoint.objects.filter(
            pk=endpoint.pk, breaker_state=endpoint.breaker_state
        ).update(breaker_state=BreakerState.OPEN, breaker_opened_at=timezone.now())
        if opened:
            tracer.event(
                "breaker.open",
                endpoint=endpoint.name,
                failures=endpoint.breaker_failures,
                **{"error.type": failure.failure_class.value},
            )
            was = (
                "the half-open probe failed"
                if endpoint.breaker_state == BreakerState.HALF_OPEN
                else f"{endpoint.breaker_failures} failures in a row"
            )
            transition_record(
                endpoint=endpoint,
                state=BreakerState.OPEN,
                reason=f"{was}; last: {failure.failure_class.value}: "
                f"{tracer.redact(str(failure))[:200]}",
                tracer=tracer,
            )


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
