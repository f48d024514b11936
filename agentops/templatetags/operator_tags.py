"""The operator's presence switch in the navigation (base.html) and the queue's
service-level timers."""

from __future__ import annotations

from typing import Any

from django import template

from agentops.models import Handoff
from agentops.operators.selectors import SlaTimer, handoff_sla_timer, operator_presence

register = template.Library()


@register.inclusion_tag("operators/_presence.html", takes_context=True)
def presence_switch(context: dict[str, Any]) -> dict[str, Any]:
    request = context["request"]
    return {
        "presence": operator_presence(user=request.user),
        "request": request,
        "csrf_token": context.get("csrf_token"),
    }


@register.filter
def sla_timer(handoff: Handoff) -> SlaTimer | None:
    return handoff_sla_timer(handoff=handoff)
