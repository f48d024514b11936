"""Reads of the core app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model

from agentops.auth import ROLES


@dataclass
class UserRow:
    user: Any
    role: str  # "" for none
    groups: list[str]  # role groups held (more than one only if set in the Django admin)


def users_list() -> list[UserRow]:
    rows = []
    for user in get_user_model().objects.prefetch_related("groups").order_by("username"):
        held = [g.name for g in user.groups.all() if g.name in ROLES]
        role = "admin" if user.is_superuser else next((r for r in reversed(ROLES) if r in held), "")
        rows.append(UserRow(user=user, role=role, groups=held))
    return rows
