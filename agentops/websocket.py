"""The WebSocket front door: only the site's own pages may open a stream, and a path that
matches no route is refused rather than crashing the handshake."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.db import DatabaseError
from django.http.request import split_domain_port, validate_host

from agentops.asgi_http import ASGIApp, InvalidKey, Receive, Scope, Send, header, key_holder
from tracing.platform.hub import ACCESS_GROUPS_SCOPE_KEY
from tracing.platform.logs import get_logger

log = get_logger(__name__)


def _header(scope: dict[str, Any], name: str) -> str:
    return header(scope, name) or ""


def _is_secure(scope: dict[str, Any]) -> bool:
    """Like Django's `HttpRequest.is_secure()`: the proxy's header when one is configured."""
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        meta_name, secure_value = proxy_header
        name = meta_name.removeprefix("HTTP_").lower().replace("_", "-")
        value = _header(scope, name)
        if value:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") in ("wss", "https")


def site_origin(scope: dict[str, Any]) -> str | None:
    """`scheme://host[:port]` of this connection, when its Host is one of ALLOWED_HOSTS."""
    host = _header(scope, "host").lower()
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    if not domain or not validate_host(domain, allowed):
        return None
    return f"{'https' if _is_secure(scope) else 'http'}://{host}"


class SiteOriginValidator(OriginValidator):
    """Accept a handshake only when its Origin is the site's own origin (scheme, host and
    port of the connection) or one of CSRF_TRUSTED_ORIGINS: the rule Django's CSRF check
    applies to a form post. Channels' AllowedHostsOriginValidator compares host names only,
    so a page on another port or scheme of the same host could read the streams."""

    def __init__(self, application: ASGIApp) -> None:
        super().__init__(application, [])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.origin_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)

    def origin_allowed(self, scope: dict[str, Any]) -> bool:
        origin = urlparse(_header(scope, "origin"))
        if not origin.scheme or origin.hostname is None:
            return False
        own = site_origin(scope)
        patterns = [own] if own else []
        # Django writes subdomain wildcards "https://*.example.com"; Channels ".example.com".
        patterns += [o.replace("://*.", "://.") for o in settings.CSRF_TRUSTED_ORIGINS]
        return any(self.match_allowed_origin(origin, pattern) for pattern in patterns)


class ApiKeyOrSiteOrigin:
    """Server-side clients authenticate with `Authorization: Bearer <api key>`: a browser
    cannot put that header on a WebSocket handshake, so no page of another site can make
    one, and the Origin check (which exists because browsers send the login cookie along)
    does not apply. A bad key is refused; without the header, `cookie_app` (the Origin check
    and the login session) decides. Consumers then authorise the user either way; a key's
    streams also watch the key's group (deleting it closes them with 4403)."""

    def __init__(self, key_app: ASGIApp, cookie_app: ASGIApp) -> None:
        self.key_app = key_app
        self.cookie_app = cookie_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return await self.cookie_app(scope, receive, send)
        try:
            holder = await key_holder(scope)
        except InvalidKey:
            return await WebsocketDenier()(scope, receive, send)
        if holder is None:
            return await self.cookie_app(scope, receive, send)
        scope = {**scope, "user": holder.user, ACCESS_GROUPS_SCOPE_KEY: holder.access_groups}
        return await self.key_app(scope, receive, send)


class NotFoundConsumer(AsyncWebsocketConsumer):
    """The last route: refuse the handshake (HTTP 403) for a path no consumer serves."""

    async def connect(self) -> None:
        await self.close(code=4404)


TRY_AGAIN_LATER = 1013  # RFC 6455: the server is overloaded; reconnect later


class DatabaseUnavailableClose:
    """A handshake that needs the database (the login session, the role, the snapshot) while
    no connection is to be had — the pool gave none within DB_POOL_TIMEOUT, or Postgres
    refused — is accepted and closed with 1013 (Try Again Later), the WebSocket's 503, rather
    than failing with a 500 the browser sees as a bare 1006. Clients reconnect after a pause
    (static/agentops/stream.js backs off)."""

    def __init__(self, inner: ASGIApp) -> None:
        self.inner = inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent: set[str] = set()

        async def tracking_send(message: dict[str, Any]) -> None:
            sent.add(message["type"])
            await send(message)

        try:
            await self.inner(scope, receive, tracking_send)
        except DatabaseError as exc:
            cause = exc.__cause__ or exc
            log.warning(
                "database.unavailable",
                path=scope.get("path", ""),
                error_class=type(cause).__name__,
                error=str(cause).strip()[:300],
            )
            if "websocket.close" in sent:
                return
            if "websocket.accept" not in sent:
                await send({"type": "websocket.accept"})
            await send(
                {
                    "type": "websocket.close",
                    "code": TRY_AGAIN_LATER,
                    "reason": "The database is busy or unavailable; reconnect in a few seconds.",
                }
            )
