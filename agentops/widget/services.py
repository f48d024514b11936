"""Writes of the embeddable chat: keys, end-user identity, rate limits, messages.

End users never log in. The frame holds a signed end-user token (django.core.signing)
naming the widget key and the end user; every API call and the WebSocket present it.
An end user is either an anonymous visitor (a random id in a signed, long-lived cookie of
the frame) or a user of the host app whose id the host signed with the key's secret
(hex HMAC-SHA256, as Intercom's identity verification). Either maps to
`Session.external_user` ("key:<key id>:visitor:…" / "key:<key id>:user:…") under the key's
agent, which is what scopes their conversations and memories: per key, since a key's
secret vouches only for its own users (another key's site may sign any id it likes).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import User
from django.core import signing
from django.core.cache import cache
from django.db import connection, transaction
from redis.exceptions import RedisError

from agentops.conversation import widget_end_user
from agentops.events import audit_record
from agentops.models import Agent, HandoffRating, Session, SessionStatus
from agentops.operators.ratings.selectors import handoff_rating_get
from agentops.operators.ratings.services import handoff_rate
from agentops.runtime.services import session_create, session_post_message
from agentops.widget.models import WidgetKey
from tracing.platform.errors import Forbidden, Invalid, TooMany
from tracing.platform.live import access_revoke, widget_key_group
from tracing.platform.logs import get_logger
from tracing.platform.types import Actor

log = get_logger(__name__)

PUBLIC_KEY_PREFIX = "pk_"
ENDUSER_SALT = "agentops.widget.enduser"
VISITOR_SALT = "agentops.widget.visitor"
ENDUSER_TOKEN_MAX_AGE = 24 * 3600  # a frame lives a day at most; reloading gives a new one
VISITOR_MAX_AGE = 400 * 24 * 3600  # browsers cap cookies at 400 days
MAX_USER_ID = 150
REFUSED_ORIGINS_KEPT = 20  # per key, the most seen (from the most client networks)
REFUSED_ORIGINS_DAYS = 7
REFUSED_ORIGINS_PER_ADDRESS = 5  # a minute: what one client network may add to the list
MAX_ORIGIN = 200
# What a client address does, limited per minute by the setting named, in the words of a refusal.
ADDRESS_LIMITS = {
    "visitor": ("WIDGET_NEW_VISITORS_PER_MINUTE", "new chats"),
    "session": ("WIDGET_SESSIONS_PER_MINUTE", "new conversations"),
    "identify": ("WIDGET_IDENTIFY_PER_MINUTE", "sign-in checks"),
}


class WidgetRefused(Forbidden):
    """The key, origin or identity is not acceptable."""


class RateLimited(TooMany):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.retry_after = retry_after


@dataclass(frozen=True)
class EndUser:
    key_id: int
    external_user: str

    @property
    def identified(self) -> bool:
        return self.external_user.startswith(f"key:{self.key_id}:user:")


def origins_clean(*, text: str) -> list[str]:
    """One origin per line (or comma separated): `scheme://host[:port]`, nothing else."""
    from urllib.parse import urlsplit

    origins = []
    for raw in text.replace(",", "\n").split():
        if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in raw):
            raise Invalid(f"{raw!r} holds a control character (a NUL, say)", field="origin")
        parts = urlsplit(raw.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"{raw!r} is not an origin like https://shop.example.com", field="origin")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise Invalid(f"{raw!r} has more than scheme, host and port", field="origin")
        origin = f"{parts.scheme}://{parts.netloc.lower()}"
        if origin not in origins:
            origins.append(origin)
    if not origins:
        raise Invalid("list at least one origin", field="origin")
    return origins


def widget_key_create(
    *,
    agent: Agent,
    name: str,
    allowed_origins: list[str],
    actor: Actor,
    user_messages_per_minute: int = 10,
    key_messages_per_minute: int = 300,
) -> tuple[WidgetKey, str]:
    """Create a key; returns it and its secret (shown once, stored encrypted)."""
    secret = "wsk_" + secrets.token_urlsafe(32)
    key = WidgetKey(
        agent=agent,
        name=name,
        public_key=PUBLIC_KEY_PREFIX + secrets.token_urlsafe(18),
        allowed_origins=allowed_origins,
        user_messages_per_minute=user_messages_per_minute,
        key_messages_per_minute=key_messages_per_minute,
        created_by=actor if isinstance(actor, User) else None,
    )
    key.set_secret(secret)
    key.save()
    audit_record(actor=actor, action="widget_key.create", target=key.public_key, agent=agent.slug)
    return key, secret


def widget_key_set_enabled(*, key: WidgetKey, enabled: bool, actor: Actor) -> WidgetKey:
    WidgetKey.objects.filter(pk=key.pk).update(enabled=enabled)
    key.enabled = enabled
    audit_record(
        actor=actor,
        action="widget_key.enable" if enabled else "widget_key.disable",
        target=key.public_key,
    )
    if not enabled:  # its open chats close (4403), as revoked access closes every stream
        access_revoke(group=widget_key_group(key.pk))
    return key


def widget_key_origin_allow(*, key: WidgetKey, origin: str, actor: Actor) -> WidgetKey:
    """Add an origin to the key's allowed ones (as the keys page offers for a refused one);
    Invalid naming it if it is not an origin."""
    origins = origins_clean(text=origin)
    if len(origins) != 1:
        raise Invalid("give one origin, like https://shop.example.com", field="origin")
    cleaned = origins[0]
    with transaction.atomic():
        key = WidgetKey.objects.select_for_update().select_related("agent").get(pk=key.pk)
        if cleaned not in key.allowed_origins:
            key.allowed_origins = [*key.allowed_origins, cleaned]
            key.save(update_fields=["allowed_origins"])
            audit_record(
                actor=actor, action="widget_key.allow_origin", target=key.public_key, origin=cleaned
            )
    name = refused_origins_name(key.pk)
    try:
        seen = cache.get(name) or {}
        if seen.pop(cleaned, None) is not None:
            cache.set(name, seen, REFUSED_ORIGINS_DAYS * 24 * 3600)
    except RedisError as exc:
        log.warning("widget.refused_origin_not_cleared", key=key.public_key, error=str(exc))
    return key


def user_token_for(*, secret: str, user_id: str) -> str:
    """What the host app's backend computes for its user (documented in the snippet)."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def visitor_new(*, key: WidgetKey) -> str:
    """A new anonymous visitor's id, signed for the cookie of the frame (per agent)."""
    return signing.dumps({"a": key.agent_id, "v": secrets.token_urlsafe(16)}, salt=VISITOR_SALT)


def visitor_read(*, key: WidgetKey, cookie: str) -> str | None:
    """The visitor id in a cookie this product signed for this key's agent, else None."""
    try:
        data = signing.loads(cookie, salt=VISITOR_SALT, max_age=VISITOR_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("a") != key.agent_id or not data.get("v"):
        return None
    return str(data["v"])


def enduser_token_issue(*, key: WidgetKey, identity: str) -> str:
    """A frame token naming the key and the end user's unscoped identity; the scope is added
    where a token is read (enduser_from_token), so no token can name another key's user."""
    return signing.dumps({"k": key.pk, "u": identity}, salt=ENDUSER_SALT)


def enduser_from_token(*, token: str) -> tuple[EndUser, WidgetKey]:
    """The end user a frame token names, with its key (enabled); else WidgetRefused."""
    try:
        data = signing.loads(token, salt=ENDUSER_SALT, max_age=ENDUSER_TOKEN_MAX_AGE)
    except signing.SignatureExpired as exc:
        raise WidgetRefused("the chat session expired; reload the page") from exc
    except signing.BadSignature as exc:
        raise WidgetRefused("invalid end-user token") from exc
    key = WidgetKey.objects.select_related("agent").filter(pk=data.get("k")).first()
    if key is None or not key.enabled:
        raise WidgetRefused("this widget key is disabled")
    external_user = widget_end_user(key_id=key.pk, identity=str(data["u"]))
    return EndUser(key_id=key.pk, external_user=external_user), key


def enduser_identify(*, key: WidgetKey, user_id: str, user_token: str) -> str:
    """Verify the host's signature of its user id; returns a frame token for that user."""
    user_id = user_id.strip()
    if not user_id or len(user_id) > MAX_USER_ID:
        raise WidgetRefused(f"user_id must be 1 to {MAX_USER_ID} characters")
    expected = user_token_for(secret=key.secret, user_id=user_id)
    if not hmac.compare_digest(expected, user_token.strip().lower()):
        raise WidgetRefused("user_token is not this user_id signed with the widget's secret")
    return enduser_token_issue(key=key, identity=f"user:{user_id}")


def rate_hit(bucket: str, limit: int, *, now: float | None = None) -> int:
    """Count one in `bucket` (messages, or an address's visitors, conversations or sign-ins)
    against `limit` a minute; returns seconds to wait if over it. A sliding minute, estimated
    from this clock minute's count and the last one's (weighted by how much of it is still in
    the last 60 s), so that no one gets twice the limit across a minute's turn."""
    window, elapsed = divmod(time.time() if now is None else now, 60)
    prefix = f"agentops:widget-rate:{bucket}"
    current_name = f"{prefix}:{int(window)}"
    cache.add(current_name, 0, 120)
    current = cache.incr(current_name)
    previous = cache.get(f"{prefix}:{int(window) - 1}") or 0
    still_counted = (60 - elapsed) / 60
    if previous * still_counted + current <= limit:
        return 0
    if current > limit or not previous:
        return max(1, math.ceil(60 - elapsed))
    # Until enough of the last minute's count has slid out of the 60 s.
    return max(1, math.ceil(60 - elapsed - (limit - current) * 60 / previous))


def client_address_scope(address: str) -> str:
    """What one client is, for the per-address limits: its IPv4 address, or the /64 of an IPv6
    one (a single host usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)  # an IPv4 client as a dual-stack listener reports it
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def address_rate_check(*, action: str, address: str) -> None:
    """Count `action` ("visitor", "session", "identify") for a client address in this
    minute's window; RateLimited past its setting (ADDRESS_LIMITS). Without it a client
    steps around the per end user limit by being a new visitor each time."""
    setting, what = ADDRESS_LIMITS[action]
    limit = int(getattr(settings, setting))
    try:
        wait = rate_hit(f"address:{action}:{client_address_scope(address)}", limit)
    except RedisError as exc:  # a limit that cannot count lets the chat open, said in the log
        log.warning("widget.address_limit_unchecked", action=action, error=str(exc))
        return
    if wait:
        raise RateLimited(
            f"Too many {what} from your network (at most {limit} a minute). Try again in {wait} s.",
            wait,
        )


def refused_origins_name(key_id: int) -> str:
    return f"agentops:widget-refused-origins:{key_id}"


def widget_origin_refused_record(*, key: WidgetKey, origin: str, address: str) -> None:
    """Remember that a page on `origin`, which the key does not allow, tried to show its chat
    (shown to admins on the keys page). A hint, not a record: outside a browser anyone can
    send any Origin. So a client network adds at most REFUSED_ORIGINS_PER_ADDRESS a minute,
    each origin counts the client networks that reported it, and when REFUSED_ORIGINS_KEPT
    are listed a new one only replaces one reported by no more networks than itself (a flood
    from a few addresses cannot push out origins many visitors hit). Entries expire
    REFUSED_ORIGINS_DAYS after they were last seen. Stored in the cache as
    {origin: (networks, last seen)}; two reports at once may lose one (it is a hint)."""
    if not origin or len(origin) > MAX_ORIGIN:
        return
    name = refused_origins_name(key.pk)
    scope = client_address_scope(address)
    ttl = REFUSED_ORIGINS_DAYS * 24 * 3600
    try:
        if rate_hit(f"address:refused-origin:{scope}", REFUSED_ORIGINS_PER_ADDRESS):
            return
        digest = hashlib.sha256(f"{origin} {scope}".encode()).hexdigest()[:32]
        new_network = cache.add(f"{name}:network:{digest}", 1, ttl)
        now = time.time()
        seen: dict[str, tuple[int, float]] = {
            o: (n, at) for o, (n, at) in (cache.get(name) or {}).items() if at > now - ttl
        }
        networks = seen.get(origin, (0, now))[0] + (1 if new_network else 0)
        if origin not in seen and len(seen) >= REFUSED_ORIGINS_KEPT:
            least = min(seen, key=lambda o: seen[o])
            if seen[least][0] > networks:
                return
            del seen[least]
        seen[origin] = (max(networks, 1), now)
        cache.set(name, seen, ttl)
    except RedisError as exc:  # the refusal itself stands; only the admin's hint is lost
        log.warning("widget.refused_origin_not_recorded", key=key.public_key, error=str(exc))


def rate_check(*, key: WidgetKey, enduser: EndUser) -> None:
    wait = rate_hit(f"user:{key.pk}:{enduser.external_user}", key.user_messages_per_minute)
    if wait:
        raise RateLimited(
            f"You are sending messages too fast (at most {key.user_messages_per_minute} a "
            f"minute). Try again in {wait} s.",
            wait,
        )
    wait = rate_hit(f"key:{key.pk}", key.key_messages_per_minute)
    if wait:
        raise RateLimited(
            f"This chat is very busy right now. Try again in {wait} s.",
            wait,
        )


def enduser_session_open(*, key: WidgetKey, enduser: EndUser, address: str) -> Session:
    """The end user's current conversation with the key's agent, started if there is none
    (or the last one was closed). Starting one counts against the client address's limit of
    conversations opened (RateLimited past it); returning the current one does not."""
    with transaction.atomic():
        with connection.cursor() as cursor:  # two first messages at once: one conversation
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                [f"widget:{key.agent_id}:{enduser.external_user}"],
            )
        current = (
            Session.objects.production()
            .filter(agent_id=key.agent_id, external_user=enduser.external_user)
            .exclude(status=SessionStatus.CLOSED)
            .order_by("-created_at")
            .first()
        )
        if current is not None:
            return current
        address_rate_check(action="session", address=address)
        return session_create(
            agent=key.agent, external_user=enduser.external_user, title="Chat widget"
        )


def enduser_session_rate(
    *, key: WidgetKey, enduser: EndUser, session_id: object, score: object, comment: object = ""
) -> tuple[HandoffRating, bool]:
    """The end user rates their own conversation an operator closed (CSAT); returns the
    rating and whether it is the first. Another's conversation is WidgetRefused; bad input
    Invalid naming the field; a conversation no operator closed, a HandoffConflict."""
    from agentops.widget.selectors import enduser_session_get  # it imports EndUser from here

    session = enduser_session_get(agent_id=key.agent_id, enduser=enduser, session_id=session_id)
    if session is None:
        raise WidgetRefused("not your conversation")
    rate_check(key=key, enduser=enduser)  # a rating counts as a message against the limits
    if not isinstance(comment, str):
        raise Invalid("must be text", field="comment")
    first = handoff_rating_get(session_id=session.pk) is None
    return handoff_rate(session_id=session.pk, score=score, comment=comment), first


def enduser_message_post(
    *, key: WidgetKey, enduser: EndUser, content: str, address: str
) -> Session:
    """Post the end user's message (authored by nobody on the staff) after the rate limits."""
    if not content.strip():
        raise Invalid("must not be empty", field="content")
    rate_check(key=key, enduser=enduser)
    session = enduser_session_open(key=key, enduser=enduser, address=address)
    session_post_message(session=session, content=content, author=None)
    return session
