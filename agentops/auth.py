"""Roles, login enforcement and personal API keys. The one owner of a role check: `has_role`
asks, `role_require` refuses (Forbidden, a 403 everywhere), `role_required` guards a page,
`role_holders` filters users; nothing else reads role groups or `is_superuser`."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING, Any

from django.contrib.auth.middleware import LoginRequiredMiddleware as DjangoLoginRequired
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from tracing.platform.errors import Forbidden
from tracing.platform.live import api_key_group, user_group

if TYPE_CHECKING:
    from agentops.models import ApiKey
    from tracing.platform.types import Actor as Actor  # where the services import it from

ROLES = ("viewer", "operator", "admin")
API_KEY_PREFIX = "ao_"
# The role read for a user object, kept on it for the request (see user_role_forget).
_ROLE_READ = "_agentops_role"


def user_role_groups(user: User) -> list[str]:
    """The role groups the account is in (more than one only if set in the Django admin),
    read through a prefetch of `groups` when there is one."""
    return [group.name for group in user.groups.all() if group.name in ROLES]


def user_role_held(user: User) -> str | None:
    """The highest role the account holds, active or not (the People page lists both), or
    None. Superusers are admins."""
    if user.is_superuser:
        return "admin"
    names = user_role_groups(user)
    return next((r for r in reversed(ROLES) if r in names), None)


def user_role(user: Actor) -> str | None:
    """The user's highest role, or None: nobody signed in, or an inactive account. Read once
    per request (`user_role_forget` after changing it)."""
    if not user or not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return "admin"
    if hasattr(user, _ROLE_READ):
        cached: str | None = getattr(user, _ROLE_READ)
        return cached
    role = user_role_held(user)
    setattr(user, _ROLE_READ, role)
    return role


def user_role_forget(user: User) -> None:
    """Forget the role read for this user object (its groups were just changed)."""
    user.__dict__.pop(_ROLE_READ, None)


def role_changeable(user: User) -> bool:
    """Whether the role groups decide this person's role: a superuser is an admin whatever
    they hold (changed in the Django admin only)."""
    return not user.is_superuser


def has_role(user: Actor, role: str) -> bool:
    """The one question about a role: does `user` hold `role` or a higher one (signed in and
    active)? For a page that shows more to an admin, a stream that closes, a list filtered."""
    held = user_role(user)
    return held is not None and ROLES.index(held) >= ROLES.index(role)


def role_require(*, user: Actor, role: str, refusal: str = "") -> None:
    """The one refusal for a missing role: `Forbidden` (403) unless `user` holds `role` or a
    higher one. The API's handler and the pages (`role_required`, `form_submit`) answer it
    with a 403; a service calls it first thing. `refusal`: the message, when "this needs the
    <role> role" would not say enough ("only admins can reassign")."""
    if not has_role(user, role):
        raise Forbidden(refusal or f"this needs the {role} role")


def role_holders(role: str) -> Q:
    """The people holding `role` or a higher one, as a filter on users (add `is_active=True`
    for those who may act now; `.distinct()`, since it joins their groups)."""
    return Q(is_superuser=True) | Q(groups__name__in=ROLES[ROLES.index(role) :])


def role_required(
    role: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """View decorator: the user must hold `role` or a higher one (403 otherwise). A
    `role_require` inside the view (an action needing more than the page) is a 403 too."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not has_role(request.user, role):
                raise PermissionDenied(f"This page needs the {role} role.")
            try:
                return view(request, *args, **kwargs)
            except Forbidden as exc:
                raise PermissionDenied(str(exc)) from exc

        wrapped.agentops_min_role = role  # type: ignore[attr-defined]
        return wrapped

    return decorator


class LoginRequiredMiddleware(DjangoLoginRequired):
    """Every page needs a login; the JSON API and /metrics answer 401 themselves."""

    open_prefixes = ("/api/", "/metrics", "/static/", "/healthz")

    def process_view(self, request, view_func, view_args, view_kwargs):  # type: ignore[no-untyped-def]
        if request.path.startswith(self.open_prefixes):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


def roles_context(request: HttpRequest) -> dict[str, Any]:
    role = user_role(getattr(request, "user", None))
    return {
        "role": role,
        "is_operator": role in ("operator", "admin"),
        "is_admin": role == "admin",
    }


# django-axes keeps the username a login tried in a column of this size.
LOGIN_ATTEMPT_USERNAME_CHARS = 255


def login_attempt_username(request: HttpRequest, credentials: dict | None = None) -> str | None:
    """The username django-axes counts a login attempt against (AXES_USERNAME_CALLABLE): the
    one typed, cut to its column (a longer one matches no account anyway; every login form,
    the admin's too, reaches axes before any length check)."""
    source = credentials if credentials else getattr(request, "POST", {})
    username = source.get("username")
    return None if username is None else str(username)[:LOGIN_ATTEMPT_USERNAME_CHARS]


def hash_api_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_key_create(*, user: Any, name: str) -> tuple[ApiKey, str]:
    """Create a personal API key; returns (row, raw key). The raw key is never stored."""
    from agentops.models import ApiKey

    raw = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey.objects.create(user=user, name=name, prefix=raw[:10], key_hash=hash_api_key(raw))
    return row, raw


def bearer_token(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` header, read here and nowhere else (every
    door: the API, metrics, SSE, WebSocket, /v1/, /mcp/, the Idempotency-Key scope). The
    scheme is case-insensitive (RFC 9110 §11.1) and whitespace around the key does not count.
    None when no key was sent: no header, a blank one, "Bearer" naming nothing, or another
    scheme (Basic from a proxy in front of the site), so a door that takes the login cookie
    lets the cookie decide and the others answer "authentication required"."""
    scheme, _, key = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip() or None


# How stale a key's `last_used_at` may get before a request with it writes it again.
API_KEY_TOUCH = timedelta(seconds=60)


@dataclass(frozen=True)
class KeyHolder:
    """Who a personal API key lets in: its (active) user, and the key, whose deletion ends
    what it opened (`api_key_group`)."""

    user: User
    key_id: int

    @property
    def access_groups(self) -> list[str]:
        """The groups whose `ACCESS_REVOKED` ends a stream this key opened."""
        return [user_group(self.user.pk), api_key_group(self.key_id)]


# The key's user, the key, and the user's role groups, in one statement (SQL rather than the
# ORM: this runs on every API request, and composing the query cost more than running it).
_KEY_HOLDER = (
    "SELECT u.*, k.id AS api_key_id, k.last_used_at AS api_key_used_at,"
    " ARRAY(SELECT g.name FROM auth_group g JOIN auth_user_groups ug ON ug.group_id = g.id"
    "       WHERE ug.user_id = u.id AND g.name = ANY(%s)) AS role_groups"
    " FROM agentops_apikey k JOIN auth_user u ON u.id = k.user_id WHERE k.key_hash = %s"
)


def api_key_holder(raw: str) -> KeyHolder | None:
    """The active user a personal API key (from bearer_token) belongs to, with the key, or
    None: an unknown key, or one of a deactivated account.

    One query: the key, its user and the user's role groups (kept on the user object for the
    request, so `has_role` asks nothing more). `last_used_at` is written at most once a
    minute (API_KEY_TOUCH; the pages show it to the minute), and never waits: a burst of
    requests with one key does not queue on the key's row."""
    if not raw.startswith(API_KEY_PREFIX):
        return None
    user = next(iter(User.objects.raw(_KEY_HOLDER, [list(ROLES), hash_api_key(raw)])), None)
    if user is None or not user.is_active:
        return None
    names: list[str] = user.role_groups  # type: ignore[attr-defined]
    setattr(user, _ROLE_READ, next((r for r in reversed(ROLES) if r in names), None))
    key_id: int = user.api_key_id  # type: ignore[attr-defined]
    used_at: datetime | None = user.api_key_used_at  # type: ignore[attr-defined]
    now = timezone.now()
    if used_at is None or now - used_at >= API_KEY_TOUCH:
        _api_key_touch(key_id=key_id, now=now)
    return KeyHolder(user=user, key_id=key_id)


def _api_key_touch(*, key_id: int, now: datetime) -> None:
    """Mark the key used now, unless another request is doing so (SKIP LOCKED: inside an
    idempotent POST's transaction the row stays locked until it ends)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE agentops_apikey SET last_used_at = %s WHERE id = ("
            " SELECT id FROM agentops_apikey WHERE id = %s"
            " AND (last_used_at IS NULL OR last_used_at <= %s) FOR UPDATE SKIP LOCKED)",
            [now, key_id, now - API_KEY_TOUCH],
        )


def api_key_user(raw: str) -> User | None:
    """The active user a personal API key (from bearer_token) belongs to, or None."""
    holder = api_key_holder(raw)
    return holder.user if holder is not None else None


@transaction.atomic
def api_key_delete(*, user: Actor, key_id: int) -> bool:
    """Delete one of the user's keys; the streams it opened end once this commits (their
    next request with it is refused). False when the user has no such key."""
    from agentops.models import ApiKey

    if user is None or user.pk is None:
        return False
    deleted, _ = ApiKey.objects.filter(pk=key_id, user_id=user.pk).delete()
    return bool(deleted)  # its streams end: agentops.signals.api_key_deleted
