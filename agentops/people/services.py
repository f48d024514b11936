"""The people's writes: roles, activation, teams and invitations (HackSoft style:
keyword-only, `<entity>_<action>`). They announce through agentops.events as the rest of the
core does (`team.saved` is how the inbox learns of a team's change)."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session as LoginSession
from django.db import transaction
from django.utils import timezone

from agentops.auth import ROLES, hash_api_key, role_changeable, user_role, user_role_forget
from agentops.events import audit_record, event_record
from agentops.models import Invitation, Team
from tracing.platform.errors import Conflict, Invalid
from tracing.platform.live import ACCESS_REVOKED, broadcast, user_group

if TYPE_CHECKING:
    from agentops.auth import Actor


def roles_ensure() -> None:
    """The role groups exist (a fresh database has none)."""
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def user_role_set(*, user: User, role: str, actor: Actor) -> None:
    """Give `user` exactly one role ("" for none): the role groups it held are replaced.

    Holding several role groups (possible in the Django admin) means the highest one, so a
    single picker is the safe way to change a role."""
    if role not in ("", *ROLES):
        raise Invalid(f"choose one of {', '.join(ROLES)} or none, not {role!r}", field="role")
    if not role_changeable(user):
        raise Invalid("a superuser is always an admin; change it in the Django admin", field="role")
    if actor is not None and user.pk == actor.pk:
        raise Invalid("you cannot change your own role; ask another admin", field="role")
    previous = user_role(user) or ""
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=ROLES))
        if role:
            user.groups.add(Group.objects.get_or_create(name=role)[0])
        if role != previous:
            audit_record(
                actor=actor,
                action="user.role_set",
                target=user.get_username(),
                role=role or "none",
                previous=previous or "none",
            )
        if previous and (not role or ROLES.index(role) < ROLES.index(previous)):
            user_streams_close(user=user)
    user_role_forget(user)


def user_streams_close(*, user: User) -> None:
    """Close the person's open WebSockets once the transaction commits (see tracing/platform/live.py,
    `user_group`): a stream opened again is authorised with the role they hold then. Pages
    need nothing: the role is read at each request."""
    broadcast(user_group(user.pk), {"kind": ACCESS_REVOKED})


def user_active_set(*, user: User, active: bool, actor: Actor) -> None:
    """Deactivate (or reactivate) a person. Deactivation ends their logins and closes their
    streams at once; their history stays."""
    if actor is not None and user.pk == actor.pk:
        raise Invalid("you cannot deactivate yourself; ask another admin", field="active")
    if user.is_active == active:
        return
    with transaction.atomic():
        user.is_active = active
        user.save(update_fields=["is_active"])
        audit_record(
            actor=actor,
            action="user.activated" if active else "user.deactivated",
            target=user.get_username(),
        )
        if not active:
            user_logins_end(user=user)
            user_streams_close(user=user)


def user_logins_end(*, user: User) -> int:
    """Delete the person's login sessions (an inactive user is refused anyway; this keeps a
    reactivation from reviving them). Returns how many ended."""
    ended = [
        s.pk
        for s in LoginSession.objects.filter(expire_date__gt=timezone.now()).iterator()
        if s.get_decoded().get("_auth_user_id") == str(user.pk)
    ]
    LoginSession.objects.filter(pk__in=ended).delete()
    return len(ended)


def user_teams_set(*, user: User, teams: Iterable[Team], actor: Actor) -> None:
    teams = list(teams)
    previous = sorted(user.teams.values_list("slug", flat=True))
    now = sorted(t.slug for t in teams)
    if previous == now:
        return
    with transaction.atomic():
        user.teams.set(teams)
        audit_record(
            actor=actor,
            action="user.teams_set",
            target=user.get_username(),
            teams=now,
            previous=previous,
        )


def user_create(*, form: Any, role: str, actor: Actor) -> Any:
    """Create a user from a valid UserCreationForm, with one role."""
    with transaction.atomic():
        user = form.save()
        audit_record(actor=actor, action="user.created", target=user.get_username())
        user_role_set(user=user, role=role, actor=actor)
    return user


def team_save(
    *,
    team: Team | None,
    slug: str,
    name: str,
    timezone_name: str,
    working_hours: dict[str, list[str]],
    members: Iterable[Any],
    actor: Actor,
    policy: dict[str, Any] | None = None,
) -> Team:
    """Create a team (`team` None) or change one; validated like the model says. `policy`:
    the assignment, escalation and service-level fields to set (TeamForm.POLICY_FIELDS)."""
    created = team is None
    team = team or Team()
    policy = policy or {}

    def policy_of(t: Team) -> dict[str, Any]:
        return {
            k: (getattr(t, k).slug if k == "escalate_to" and getattr(t, k) else getattr(t, k))
            for k in policy
        }

    before = (
        {}
        if created
        else {
            "slug": team.slug,
            "name": team.name,
            "timezone": team.timezone,
            "working_hours": team.working_hours,
            "members": sorted(team.members.values_list("username", flat=True)),
            **policy_of(team),
        }
    )
    team.slug, team.name, team.timezone = slug, name, timezone_name
    team.working_hours = working_hours
    for field, value in policy.items():
        setattr(team, field, value)
    team.full_clean()
    members = list(members)
    after = {
        "slug": slug,
        "name": name,
        "timezone": timezone_name,
        "working_hours": working_hours,
        "members": sorted(m.get_username() for m in members),
        **policy_of(team),
    }
    with transaction.atomic():
        team.save()
        team.members.set(members)
        changes: dict[str, Any] = {k: v for k, v in after.items() if before.get(k) != v}
        # Audited if anything changed; announced either way (the inbox gives out what waits:
        # the team may be automatic now, have a larger cap or new members).
        event_record(
            kind="team.saved",
            actor=actor,
            data={"team": slug, "team_id": team.pk},
            audit=("team.created" if created else "team.changed") if changes else "",
            target=slug,
            detail=changes,
            ops=False,
        )
    return team


def invitation_create(
    *, role: str, teams: Iterable[Team], note: str, actor: Actor
) -> tuple[Invitation, str]:
    """A one-time link for a new person; returns (row, raw token). Only the hash is kept."""
    if role not in ROLES:
        raise Invalid(f"choose one of {', '.join(ROLES)}", field="role")
    raw = secrets.token_urlsafe(32)
    teams = list(teams)
    with transaction.atomic():
        invitation = Invitation.objects.create(
            token_hash=hash_api_key(raw),
            role=role,
            note=note[:200],
            created_by=actor if isinstance(actor, User) else None,
            expires_at=timezone.now() + timedelta(days=settings.INVITATION_DAYS),
        )
        invitation.teams.set(teams)
        audit_record(
            actor=actor,
            action="invitation.created",
            target=note or f"invitation {invitation.pk}",
            invitation=invitation.pk,
            role=role,
            teams=sorted(t.slug for t in teams),
            expires_at=invitation.expires_at.isoformat(),
        )
    return invitation, raw


class InvitationUnusable(Conflict):
    """The link is unknown, expired, revoked or used already (the message says which)."""


def invitation_usable(invitation: Invitation | None) -> Invitation:
    if invitation is None:
        raise InvitationUnusable("This invitation link is not valid.")
    if invitation.accepted_at is not None:
        raise InvitationUnusable("This invitation link was used already.")
    if invitation.revoked_at is not None:
        raise InvitationUnusable("This invitation was withdrawn.")
    if invitation.expires_at <= timezone.now():
        raise InvitationUnusable("This invitation link has expired.")
    return invitation


def invitation_accept(*, token: str, form: Any) -> Any:
    """Create the person from a valid UserCreationForm with the invitation's role and teams.
    The invitation row is locked, so a link used twice at once makes one account."""
    with transaction.atomic():
        invitation = invitation_usable(
            Invitation.objects.select_for_update().filter(token_hash=hash_api_key(token)).first()
        )
        user = form.save()
        user.groups.add(Group.objects.get_or_create(name=invitation.role)[0])
        user.teams.set(invitation.teams.all())
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit_record(
            actor=user,
            action="invitation.accepted",
            target=user.get_username(),
            invitation=invitation.pk,
            role=invitation.role,
            teams=sorted(invitation.teams.values_list("slug", flat=True)),
        )
    return user


def invitation_revoke(*, invitation: Invitation, actor: Actor) -> None:
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        return
    with transaction.atomic():
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
        audit_record(
            actor=actor,
            action="invitation.revoked",
            target=invitation.note or f"invitation {invitation.pk}",
            invitation=invitation.pk,
        )
