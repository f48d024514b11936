"""Signal receivers of the core app: login lockouts (django-axes) go to the audit log. (An
operator's login and logout move their presence: agentops/operators/receivers.py.)"""

from __future__ import annotations

from axes.signals import user_locked_out
from django.dispatch import receiver
from django.http import HttpRequest

from agentops.events import audit_record


@receiver(user_locked_out, dispatch_uid="agentops.login_locked_out")
def login_locked_out(
    sender: object, request: HttpRequest | None, username: str | None, ip_address: str, **_: object
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
