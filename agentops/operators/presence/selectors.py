"""Reads of presence."""

from __future__ import annotations

from agentops.models import OperatorState, Presence
from agentops.operators.access import user_pk
from tracing.platform.types import RequestUser


def operator_presence(*, user: RequestUser) -> str:
    state = OperatorState.objects.filter(user_id=user_pk(user)).values_list("presence", flat=True)
    return state.first() or Presence.OFFLINE
