"""Signal receivers of the core app: login lockouts (django-axes) go to the audit log; a
deleted API key ends the streams it opened. (An operator's login and logout move their
presence: agentops/operators/receivers.py.)"""

from __future__ import annotations

from axes.signals import user_locked_out
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.http import HttpRequest

from agentops.events import audit_record
from agentops.models import ApiKey
from tracing.platform.live import access_revoke, api_key_group


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


@receiver(post_delete, sender=ApiKey, dispatch_uid="agentops.api_key_deleted")
def api_key_deleted(sender: type[ApiKey], instance: ApiKey, **_: object) -> None:
    """However a key goes — its owner's account page, the admin, its person deleted — the
    streams it opened end once the deletion commits."""
    access_revoke(group=api_key_group(instance.pk))
