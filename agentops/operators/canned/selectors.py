"""Reads of canned replies: who may change one, which an operator may use."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from agentops.auth import has_role
from agentops.models import Handoff, Team
from agentops.operators.access import user_pk
from agentops.operators.canned.placeholders import placeholder_values, placeholders_fill
from agentops.operators.models import CannedReply
from tracing.platform.types import RequestUser


def canned_reply_may_edit(*, reply: CannedReply, user: RequestUser) -> bool:
    """Personal replies: their owner only. Team replies: admins and the team's members.
    Replies for everyone: admins."""
    if reply.owner_id:
        return bool(reply.owner_id == user.pk)
    if not has_role(user, "operator"):
        return False
    if has_role(user, "admin"):
        return True
    return (
        reply.team_id is not None
        and Team.objects.filter(pk=reply.team_id, members__pk=user_pk(user)).exists()
    )


def canned_replies_usable(*, user: RequestUser, team: Team | None = None) -> QuerySet[CannedReply]:
    """The replies an operator may insert: their own, those for every operator, their
    teams' and the team of the handoff they are answering."""
    teams = Q(team__in=Team.objects.filter(members__pk=user_pk(user)))
    if team is not None:
        teams |= Q(team=team)
    scope = Q(owner=user) | Q(owner__isnull=True, team__isnull=True) | teams
    return CannedReply.objects.filter(scope).select_related("team").order_by("shortcut", "id")


def canned_replies_for_handoff(*, handoff: Handoff, user: RequestUser) -> list[dict[str, str]]:
    """The usable replies with their placeholders filled for this conversation, as the reply
    box's `/` search gets them (plain text: the box inserts text, never markup)."""
    values = placeholder_values(session=handoff.session, operator=user, team=handoff.team)
    return [
        {
            "shortcut": r.shortcut,
            "title": r.title,
            "scope": "personal" if r.owner_id else (r.team.name if r.team else "everyone"),
            "text": placeholders_fill(text=r.content, values=values),
        }
        for r in canned_replies_usable(user=user, team=handoff.team)
    ]


def canned_replies_manageable(*, user: RequestUser) -> list[CannedReply]:
    """The replies listed on the management page: those the user may use, admins' view
    adds every team's (personal replies stay their owner's)."""
    qs = CannedReply.objects.select_related("team", "owner")
    if has_role(user, "admin"):
        qs = qs.filter(Q(owner=user) | Q(owner__isnull=True))
    else:
        qs = canned_replies_usable(user=user).select_related("team", "owner")
    return list(qs.order_by("shortcut", "id"))
