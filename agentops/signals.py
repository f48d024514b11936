"""Signal receivers of the core app: login lockouts (django-axes) go to the audit log; an
operator who logs out goes offline (is given no more conversations)."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver
from django.utils import timezone

from agentops.services import audit_record


@receiver(user_locked_out, dispatch_uid="agentops.login_locked_out")
def login_locked_out(
    sender: Any, request: Any, username: str | None, ip_address: str, **_: Any
) -> None:
    """Each refused login of a locked-out account or address: the one that reached the limit
    and every further try (which also restarts the wait)."""
    audit_record(
        actor=None,
        action="login.locked_out",
        target=username or "",
        ip_address=ip_address,
        failures=getattr(request, "axes_failures_since_start", None),
        path=getattr(request, "path", ""),
    )


@receiver(user_logged_out, dispatch_uid="agentops.operator_offline")
def operator_offline(sender: Any, request: Any, user: Any, **_: Any) -> None:
    from agentops.models import OperatorState, Presence

    if user is not None:
        OperatorState.objects.filter(user_id=user.pk).exclude(presence=Presence.OFFLINE).update(
            presence=Presence.OFFLINE, presence_changed_at=timezone.now()
        )
