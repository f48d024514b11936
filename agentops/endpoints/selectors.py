"""Reads for the endpoint and price pages."""

from __future__ import annotations

from django.db.models import Count, QuerySet

from agentops.models import BreakerTransition, ModelEndpoint
from tracing.models import ModelPrice


def endpoint_list() -> QuerySet[ModelEndpoint]:
    return ModelEndpoint.objects.annotate(agent_count=Count("agents")).order_by("name")


def endpoint_transitions(*, endpoint: ModelEndpoint, limit: int = 50) -> list[BreakerTransition]:
    return list(BreakerTransition.objects.filter(endpoint=endpoint).select_related("actor")[:limit])


def price_list() -> QuerySet[ModelPrice]:
    return ModelPrice.objects.order_by("model")
