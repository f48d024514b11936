"""Writes for model endpoints and model prices: save, test connection, breaker reset."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction

from agentops.events import audit_record
from agentops.models import BreakerState, BreakerTransition, ModelEndpoint
from agentops.runtime.breaker import breaker_window_clear
from agentops.runtime.model_client import model_complete
from tracing.emit import REDACTED
from tracing.models import ModelPrice
from tracing.platform.failures import Failure

if TYPE_CHECKING:
    from agentops.auth import Actor

TEST_PROMPT = "Reply with one word: pong"


def default_endpoint_config() -> dict[str, str]:
    """Where the default endpoint points: OPENAI_BASE_URL, OpenAI itself, or the dev model."""
    if settings.OPENAI_BASE_URL:
        return {
            "base_url": settings.OPENAI_BASE_URL,
            "model": settings.DEFAULT_MODEL or "gpt-4o-mini",
        }
    if settings.OPENAI_API_KEY:
        return {
            "base_url": "https://api.openai.com/v1",
            "model": settings.DEFAULT_MODEL or "gpt-4o-mini",
        }
    return {"base_url": settings.DEVMODEL_URL, "model": settings.DEFAULT_MODEL or "devmodel"}


def endpoint_ensure_default() -> ModelEndpoint:
    config = default_endpoint_config()
    endpoint, _ = ModelEndpoint.objects.get_or_create(
        name="default", defaults={"base_url": config["base_url"], "default_model": config["model"]}
    )
    endpoint.base_url = config["base_url"]
    endpoint.default_model = config["model"]
    endpoint.set_api_key(settings.OPENAI_API_KEY)
    endpoint.save()
    return endpoint


@dataclass(frozen=True)
class EndpointCheck:
    ok: bool
    latency_ms: int
    model: str
    reply: str = ""
    error_class: str = ""
    message: str = ""


def endpoint_save(
    *, endpoint: ModelEndpoint, api_key: str | None, clear_api_key: bool = False, actor: Actor
) -> ModelEndpoint:
    """Save an endpoint. `api_key` None keeps the stored key; the key is write-only (stored
    encrypted, never shown or logged)."""
    if clear_api_key:
        endpoint.set_api_key("")
    elif api_key:
        endpoint.set_api_key(api_key)
    _save_audited(
        endpoint,
        actor=actor,
        kind="endpoint",
        target=endpoint.name,
        api_key_changed=bool(api_key) or clear_api_key,
    )
    return endpoint


def _save_audited(
    instance: ModelEndpoint | ModelPrice, *, actor: Actor, kind: str, target: str, **details: Any
) -> None:
    """Validate and save `instance`, recording `<kind>.create` or `<kind>.update` in the audit
    log in the same transaction."""
    created = instance.pk is None
    instance.full_clean()
    with transaction.atomic():
        instance.save()
        audit_record(
            actor=actor,
            action=f"{kind}.create" if created else f"{kind}.update",
            target=target,
            **details,
        )


def endpoint_test(*, endpoint: ModelEndpoint, model: str = "") -> EndpointCheck:
    """A real minimal chat completion through the runtime's client, once: no retry, and not
    counted on the circuit breaker (a diagnosis, not traffic). Errors come back classified,
    with the endpoint's key redacted."""
    model = model or endpoint.default_model
    started = time.perf_counter()
    try:
        reply = model_complete(
            endpoint=endpoint,
            model=model,
            messages=[{"role": "user", "content": TEST_PROMPT}],
            tools=[],
            temperature=None,
        )
    except Failure as failure:
        message = str(failure) or type(failure).__name__
        if endpoint.api_key:
            message = message.replace(endpoint.api_key, REDACTED)
        return EndpointCheck(
            ok=False,
            latency_ms=round((time.perf_counter() - started) * 1000),
            model=model,
            error_class=failure.failure_class.value,
            message=message[:500],
        )
    return EndpointCheck(
        ok=True,
        latency_ms=round((time.perf_counter() - started) * 1000),
        model=reply.model or model,
        reply=reply.content[:200],
    )


def endpoint_breaker_reset(*, endpoint: ModelEndpoint, actor: Actor) -> BreakerTransition:
    """Close the breaker by hand: calls go to the endpoint again at once."""
    with transaction.atomic():
        before = (
            ModelEndpoint.objects.select_for_update()
            .values_list("breaker_state", "breaker_failures")
            .get(pk=endpoint.pk)
        )
        ModelEndpoint.objects.filter(pk=endpoint.pk).update(
            breaker_state=BreakerState.CLOSED, breaker_failures=0, breaker_opened_at=None
        )
        breaker_window_clear(endpoint=endpoint)
        name = getattr(actor, "username", "") or "someone"
        transition = BreakerTransition.objects.create(
            endpoint=endpoint,
            state=BreakerState.CLOSED,
            reason=f"reset by {name} (was {before[0]}, {before[1]} failures)",
            failures=before[1],
            actor=actor if actor is not None and actor.is_authenticated else None,
        )
        audit_record(
            actor=actor, action="endpoint.breaker_reset", target=endpoint.name, was=before[0]
        )
    endpoint.breaker_state, endpoint.breaker_failures, endpoint.breaker_opened_at = (
        BreakerState.CLOSED,
        0,
        None,
    )
    return transition


def price_save(*, price: ModelPrice, actor: Actor) -> ModelPrice:
    _save_audited(
        price,
        actor=actor,
        kind="price",
        target=price.model,
        input_per_million=str(price.input_per_million),
        output_per_million=str(price.output_per_million),
    )
    return price


def price_delete(*, price: ModelPrice, actor: Actor) -> None:
    with transaction.atomic():
        audit_record(actor=actor, action="price.delete", target=price.model)
        price.delete()
