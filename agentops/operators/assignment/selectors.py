"""Reads of assignment: who in a team may be given conversations."""

from __future__ import annotations

from django.db.models import Q

from agentops.models import Team


def operator_user_ids(*, team: Team) -> list[int]:
    """The team's members who may be given conversations: active operators and admins."""
    members = team.members.filter(is_active=True).filter(
        Q(groups__name__in=["operator", "admin"]) | Q(is_superuser=True)
    )
    return sorted(set(members.values_list("pk", flat=True)))
