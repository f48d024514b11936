"""The operator's presence switch in the navigation (base.html)."""

from __future__ import annotations

from typing import Any

from django import template

from agentops.operators.selectors import operator_presence

register = template.Library()


@register.inclusion_tag("operators/_presence.html", takes_context=True)
def presence_switch(context: dict[str, Any]) -> dict[str, Any]:
    request = context["request"]
    return {
        "presence": operator_presence(user=request.user),
        "request": request,
        "csrf_token": context.get("csrf_token"),
    }
