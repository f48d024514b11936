"""The people's reads: who holds which role and team, the teams with who is on shift, and
the invitations still open."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, time

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone

from agentops.auth import hash_api_key, user_role_groups, user_role_held
from agentops.models import WEEKDAYS, Invitation, OperatorState, Presence, Team
from agentops.selectors import operator_loads


@dataclass
class UserRow:
    user: User
    role: str  # "" for none
    groups: list[str]  # role groups held (more than one only if set in the Django admin)
    teams: list[Team] = field(default_factory=list)
    cap: int | None = None  # their own concurrent-conversation cap; None: their team's


def users_list() -> list[UserRow]:
    rows = []
    caps = dict(OperatorState.objects.values_list("user_id", "concurrent_cap"))
    for user in get_user_model().objects.prefetch_related("groups", "teams").order_by("username"):
        held = user_role_groups(user)
        role = user_role_held(user) or ""
        teams = list(user.teams.all())
        rows.append(UserRow(user=user, role=role, groups=held, teams=teams, cap=caps.get(user.pk)))
    return rows


def team_is_working(*, team: Team, at: datetime) -> bool:
    """Whether `at` falls within the team's working hours, in the team's time zone."""
    local = at.astimezone(zoneinfo.ZoneInfo(team.timezone))
    hours = team.working_hours.get(WEEKDAYS[local.weekday()])
    if not hours:
        return False
    start, end = (time.fromisoformat(h) for h in hours)
    return start <= local.time().replace(tzinfo=None) < end


@dataclass
class MemberRow:
    user: User
    presence: str  # online, away or offline
    load: int  # conversations held now
    cap: int  # given at most this many at once (their own cap, or the team's)


@dataclass
class TeamRow:
    team: Team
    on_shift: bool | None  # the team's working hours include now (None: it has none set)
    members: list[User]  # active ones first
    agents: list[str]  # slugs of the agents handing off to it
    people: list[MemberRow] = field(default_factory=list)  # the members, with presence and load


def teams_all() -> QuerySet[Team]:
    """Every team, in slug order: the one list behind each team picker and filter."""
    return Team.objects.order_by("slug")


def team_get(*, slug: str) -> Team | None:
    """The team with this slug (as the model, a form or a URL names it), or None."""
    return Team.objects.filter(slug=slug).first() if slug else None


def team_rows(*, now: datetime | None = None) -> list[TeamRow]:
    """Every team with its members and whether it is within working hours now (who is on
    shift: its active members, while it is)."""
    now = now or timezone.now()
    rows = []
    for team in Team.objects.prefetch_related("members", "agents").order_by("slug"):
        members = sorted(team.members.all(), key=lambda u: (not u.is_active, u.get_username()))
        loads = operator_loads(user_ids=[u.pk for u in members])
        states = {
            s.user_id: s for s in OperatorState.objects.filter(user_id__in=[u.pk for u in members])
        }
        people = [
            MemberRow(
                user=u,
                presence=states[u.pk].presence if u.pk in states else Presence.OFFLINE,
                load=loads[u.pk],
                cap=(states[u.pk].concurrent_cap if u.pk in states else None)
                or team.concurrent_cap,
            )
            for u in members
        ]
        rows.append(
            TeamRow(
                team=team,
                on_shift=team_is_working(team=team, at=now) if team.working_hours else None,
                members=members,
                agents=sorted(a.slug for a in team.agents.all()),
                people=people,
            )
        )
    return rows


def invitations_pending(*, now: datetime | None = None) -> list[Invitation]:
    now = now or timezone.now()
    return list(
        Invitation.objects.filter(accepted_at=None, revoked_at=None, expires_at__gt=now)
        .select_related("created_by")
        .prefetch_related("teams")
        .order_by("-created_at")
    )


def invitation_by_token(*, token: str) -> Invitation | None:
    return (
        Invitation.objects.prefetch_related("teams").filter(token_hash=hash_api_key(token)).first()
    )
