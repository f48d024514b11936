from __future__ import annotations

from typing import Any

from django import template

from agentops.webhooks.selectors import webhook_endpoints_disabled

register = template.Library()


@register.inclusion_tag("webhooks/disabled_banner.html", takes_context=True)
def webhooks_disabled_banner(context: template.Context) -> dict[str, Any]:
    """Admins see, on every page, the webhook endpoints the product disabled."""
    disabled = list(webhook_endpoints_disabled()) if context.get("is_admin") else []
    return {"disabled": disabled}
