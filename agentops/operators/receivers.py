"""An operator's login and logout move their presence (operators/presence/services.py):
connected by AgentOpsConfig.ready()."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest

from agentops.operators.presence.services import operator_logged_in, operator_logged_out


@receiver(user_logged_in, dispatch_uid="agentops.operator_logged_in")
def operator_login(sender: object, request: HttpRequest, user: User, **_: object) -> None:
    operator_logged_in(user=user)


@receiver(user_logged_out, dispatch_uid="agentops.operator_offline")
def operator_logout(sender: object, request: HttpRequest, user: User, **_: object) -> None:
    if user is not None:
        operator_logged_out(user=user)
