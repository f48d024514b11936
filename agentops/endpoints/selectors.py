"""Reads for the endpoint and price pages."""

from __future__ import annotations

from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from agentops.models import BreakerTransition, ModelEndpoint
from agentops.runtime.breaker import BreakerWindow, breaker_window, window_calls
from tracing.models import ModelPrice


def endpoint_list() -> QuerySet[ModelEndpoint]:
    """With `window_failures`: the failures its circuit breaker weighs now."""
    failures = (
        window_calls(endpoint_id=OuterRef("pk"))
        .filter(failed=True)
        .values("endpoint_id")
        .annotate(n=Count("id"))
        .values("n")
    )
    return ModelEndpoint.objects.annotate(
        agent_count=Count("agents"), window_failures=Coalesce(Subquery(failures), 0)
    ).order_by("name")


def endpoint_transitions(*, endpoint: ModelEndpoint, limit: int = 50) -> list[BreakerTransition]:
    return list(BreakerTransition.objects.filter(endpoint=endpoint).select_related("actor")[:limit])


def endpoint_breaker_window(*, endpoint: ModelEndpoint) -> BreakerWindow:
    return breaker_window(endpoint=endpoint)


def price_list() -> QuerySet[ModelPrice]:
    return ModelPrice.objects.order_by("model")
