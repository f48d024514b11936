"""The operator's presence switch in the navigation and the banner of an operator who is not
online (base.html), and the queue's service-level timers."""

from __future__ import annotations

from typing import Any

from django import template

from agentops.models import Handoff
from agentops.operators.presence.selectors import operator_presence
from agentops.operators.queue.selectors import SlaTimer, handoff_sla_timer

register = template.Library()


@register.inclusion_tag("operators/_presence.html", takes_context=True)
def presence_switch(context: dict[str, Any]) -> dict[str, Any]:
    request = context["request"]
    return {
        "presence": operator_presence(user=request.user),
        "request": request,
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("operators/_presence_banner.html", takes_context=True)
def presence_banner(context: dict[str, Any]) -> dict[str, Any]:
    """Says so when an operator is not online (no conversations are assigned to them), with
    a button to go online; hidden while online, shown and hidden live by notify.js."""
    return presence_switch(context)


@register.filter
def sla_timer(handoff: Handoff) -> SlaTimer | None:
    return handoff_sla_timer(handoff=handoff)
