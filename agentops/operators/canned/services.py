"""Canned replies: saved and deleted by those who may."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction

from agentops.auth import has_role, role_require
from agentops.events import audit_record
from agentops.models import Team
from agentops.operators.canned.placeholders import placeholders_unknown
from agentops.operators.canned.selectors import canned_reply_may_edit
from agentops.operators.models import CannedReply
from agentops.people.selectors import team_get
from tracing.platform.errors import Forbidden, Invalid


def canned_reply_save(
    *,
    reply: CannedReply | None,
    shortcut: str,
    title: str,
    content: str,
    scope: str,
    actor: Any,
) -> CannedReply:
    """Create (`reply` None) or change a canned reply. `scope`: "personal", "team:<slug>" or
    "everyone". Unknown placeholders and scopes the actor may not write to are refused
    (ValueError naming the field)."""
    role_require(user=actor, role="operator")
    unknown = placeholders_unknown(text=content)
    if unknown:
        names = ", ".join("{{ " + n + " }}" for n in unknown)
        raise Invalid(f"unknown placeholder {names}", field="content")
    created = reply is None
    reply = reply or CannedReply(created_by=actor)
    if not created and not canned_reply_may_edit(reply=reply, user=actor):
        raise Forbidden("you may not change this canned reply")
    team: Team | None = None
    owner: Any = None
    if scope == "personal":
        owner = actor
    elif scope.startswith("team:"):
        team = team_get(slug=scope.removeprefix("team:"))
        if team is None:
            raise Invalid(f"there is no team {scope.removeprefix('team:')!r}", field="scope")
        if not has_role(actor, "admin") and not actor.teams.filter(pk=team.pk).exists():
            raise Invalid(f"you are not a member of team {team.slug}", field="scope")
    elif scope == "everyone":
        if not has_role(actor, "admin"):
            raise Invalid("only admins write replies for every operator", field="scope")
    else:
        raise Invalid("choose personal, a team or everyone", field="scope")
    reply.shortcut, reply.title, reply.content = shortcut, title, content
    reply.team, reply.owner = team, owner
    taken = CannedReply.objects.filter(shortcut=shortcut, team=team, owner=owner)
    if not created:
        taken = taken.exclude(pk=reply.pk)
    if taken.exists():
        raise Invalid(f"/{shortcut} is taken in this scope", field="shortcut")
    reply.full_clean(validate_unique=False, validate_constraints=False)
    with transaction.atomic():
        try:
            with transaction.atomic():  # taken meanwhile by another admin: the same error
                reply.save()
        except IntegrityError:
            raise Invalid(f"/{shortcut} is taken in this scope", field="shortcut") from None
        audit_record(
            actor=actor,
            action="canned_reply.created" if created else "canned_reply.changed",
            target=f"/{shortcut}",
            scope=reply.scope,
        )
    return reply


@transaction.atomic
def canned_reply_delete(*, reply: CannedReply, actor: Any) -> None:
    if not canned_reply_may_edit(reply=reply, user=actor):
        raise Forbidden("you may not delete this canned reply")
    audit_record(
        actor=actor, action="canned_reply.deleted", target=f"/{reply.shortcut}", scope=reply.scope
    )
    reply.delete()
