"""Who may act on a handoff: the one rule the inbox's services, pages, API and streams ask.

An open handoff is anyone's on the shift; a claimed one its holder's (or an admin's); a
resolved one nobody's to change. A refusal is a HandoffConflict naming why.
"""

from __future__ import annotations

from agentops.auth import has_role, role_require
from agentops.models import Handoff, HandoffStatus, Session
from tracing.platform.errors import Conflict
from tracing.platform.types import Actor, RequestUser


class HandoffConflict(Conflict):
    """The handoff is not in a state that allows this (someone else acted first)."""


def username_of(user: Actor) -> str:
    return user.get_username() if user is not None else "nobody"


def user_pk(user: RequestUser) -> int:
    """The signed-in user's id; 0, which matches nobody, for an anonymous visitor."""
    return user.pk or 0


def handoff_workable_by(*, handoff: Handoff, user: RequestUser) -> bool:
    """Whether `user` may open and work this handoff: admins any; operators open and resolved
    ones and those they hold, not another operator's (an admin reassigns it)."""
    if has_role(user, "admin") or handoff.status != HandoffStatus.CLAIMED:
        return True
    return bool(handoff.claimed_by_id == user.pk)


def handoff_act_check(*, handoff: Handoff, user: RequestUser) -> None:
    """Reply, hand back, close: the handoff is claimed, by `user` (or `user` is an admin)."""
    if handoff.status != HandoffStatus.CLAIMED:
        raise HandoffConflict(f"this handoff is {handoff.status}, not claimed")
    if handoff.claimed_by_id != user.pk and not has_role(user, "admin"):
        raise HandoffConflict(f"this handoff is claimed by {username_of(handoff.claimed_by)}")


def handoff_work_check(*, handoff: Handoff, user: RequestUser) -> None:
    """Transfer and snooze: an open handoff is anyone's on the shift; a claimed one its
    holder's (or an admin's); a resolved one nobody's."""
    role_require(user=user, role="operator")
    if handoff.status == HandoffStatus.RESOLVED:
        raise HandoffConflict("this handoff is already resolved")
    if handoff.status == HandoffStatus.CLAIMED:
        handoff_act_check(handoff=handoff, user=user)


def session_held_by_another(*, session: Session, user: RequestUser) -> bool:
    """A handoff of the session is claimed by an operator other than `user` (not an admin)."""
    if has_role(user, "admin"):
        return False
    return (
        Handoff.objects.filter(session=session, status=HandoffStatus.CLAIMED)
        .exclude(claimed_by_id=user.pk)
        .exists()
    )
