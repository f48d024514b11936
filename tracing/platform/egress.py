"""Egress guard: every request to a tool, an OAuth2 token endpoint, an MCP server, a
credential's test URL, an alert or an event webhook reaches only public addresses, unless an
address is allowlisted (TOOL_EGRESS_ALLOWLIST), and ignores proxy settings of the
environment. Model endpoints, the embedding endpoint and the OTLP exporter are the
deployer's own servers (often on loopback) and are not guarded; see docs/architecture.md. It lives in `tracing`, the bottom layer, so that `tracing`'s own alert
webhooks and the `tools` app share the one guard.

The check runs after DNS resolution, inside the HTTP client's network backend, so it
applies to every connection a request makes (the first one and every redirect hop) and
the socket connects to the very address that was checked: a DNS answer that changes
between the check and the connect (DNS rebinding) cannot slip through.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpcore2
import httpx
import httpx2
from django.conf import settings

from tracing.platform.failures import Failure, FailureClass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list[tuple[Any, ...]]]

METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressDenied(Failure):
    """An outbound request tried to reach an address it may not reach. Nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(FailureClass.TOOL_ERROR, message, may_have_reached_server=False)


def _allowlist() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.TOOL_EGRESS_ALLOWLIST]


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_class(ip: IPAddress) -> str | None:
    """Why outbound requests may not reach this address ("loopback", "private", ...), or None if public."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        return address_class(embedded)
    if ip in METADATA_ADDRESSES:
        return "cloud metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"
    return None


def egress_decision(ip: IPAddress) -> str | None:
    """None when outbound requests may connect to `ip`; otherwise the reason they may not."""
    if any(ip in network for network in _allowlist()):
        return None
    embedded = _embedded_ipv4(ip)
    if embedded is not None and any(embedded in network for network in _allowlist()):
        return None
    return address_class(ip)


def egress_resolve(host: str, port: int, *, resolver: Resolver | None = None) -> list[str]:
    """Resolve `host` and return its addresses, all of which outbound requests may reach.

    Raises EgressDenied when the host does not resolve or when any of its addresses is
    refused: a name that also points somewhere internal is not trusted at all.
    """
    host = host.strip("[]")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = (resolver or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise EgressDenied(f"Cannot resolve host {host!r}: {exc}") from exc
        addresses = []
        for info in infos:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
            if ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise EgressDenied(f"Host {host!r} has no address.")
    for ip in addresses:
        reason = egress_decision(ip)
        if reason is not None:
            shown = host if literal is not None else f"{host} ({ip})"
            raise EgressDenied(
                f"Refused to connect to {shown}: a {reason} address, which AgentOps may not reach "
                "(an admin can allow it with TOOL_EGRESS_ALLOWLIST)."
            )
    return [str(ip) for ip in addresses]


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore network backend that checks every address before connecting to it."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        self._inner = httpcore.SyncBackend()
        self._resolver = resolver

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for ip in egress_resolve(host, port, resolver=self._resolver):
            try:
                return self._inner.connect_tcp(
                    ip,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, *args: object, **kwargs: object) -> httpcore.NetworkStream:
        raise EgressDenied("Outbound requests may not connect to Unix sockets.")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class AsyncGuardedBackend(httpcore2.AsyncNetworkBackend):
    """The same guard for httpcore2 (used by the `mcp` package's HTTP client)."""

    def __init__(self, resolver: Resolver | None = None) -> None:
        self._inner = httpcore2.AnyIOBackend()
        self._resolver = resolver

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        import anyio.to_thread

        addresses = await anyio.to_thread.run_sync(
            lambda: egress_resolve(host, port, resolver=self._resolver)
        )
        last: Exception | None = None
        for ip in addresses:
            try:
                return await self._inner.connect_tcp(
                    ip,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore2.ConnectError as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self, *args: object, **kwargs: object
    ) -> httpcore2.AsyncNetworkStream:
        raise EgressDenied("Outbound requests may not connect to Unix sockets.")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, resolver: Resolver | None = None) -> None:
        super().__init__(trust_env=False)
        # httpx takes no network backend argument; the pool is rebuilt with the guard.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            network_backend=GuardedBackend(resolver),
            # Shared by a process's runs (see _shared_pool): as many connections as calls in
            # flight, up to 100 idle ones kept for 30 s.
            max_connections=None,
            max_keepalive_connections=100,
            keepalive_expiry=30,
        )


class AsyncGuardedTransport(httpx2.AsyncHTTPTransport):
    def __init__(self, resolver: Resolver | None = None) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            network_backend=AsyncGuardedBackend(resolver),
        )


class _SharedTransport(httpx.BaseTransport):
    """Lends a process-wide guarded pool to one client: closing the client keeps the pool."""

    def __init__(self, pool: GuardedTransport) -> None:
        self.pool = pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.pool.handle_request(request)

    def close(self) -> None:
        pass


_pools: dict[tuple[int, tuple[str, ...]], GuardedTransport] = {}
_pools_lock = threading.Lock()


def _shared_pool() -> GuardedTransport:
    """One guarded connection pool per process (and allowlist), so calls to the same host
    reuse kept-alive connections instead of a TCP (and TLS) handshake each. Every connection
    was checked by the guard when it was opened; a changed allowlist gets a pool of its own,
    and a forked process never uses its parent's sockets."""
    key = (os.getpid(), tuple(settings.TOOL_EGRESS_ALLOWLIST))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = GuardedTransport()
        return pool


def guarded_client(*, timeout: float, resolver: Resolver | None = None) -> httpx.Client:
    """An httpx client for outbound traffic: egress-guarded, no proxies from the environment,
    redirects not followed (the caller follows them, so each hop is checked). Its cookie jar is
    its own; its connections come from the process's shared pool (a custom resolver, used by
    tests, gets a pool of its own)."""
    return httpx.Client(
        transport=GuardedTransport(resolver) if resolver else _SharedTransport(_shared_pool()),
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    )


def guarded_async_client(
    *,
    timeout: float,
    headers: dict[str, str] | None = None,
    resolver: Resolver | None = None,
    event_hooks: dict[str, list[Any]] | None = None,
) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        transport=AsyncGuardedTransport(resolver),
        timeout=httpx2.Timeout(timeout),
        headers=headers,
        follow_redirects=False,
        trust_env=False,
        event_hooks=event_hooks,
    )


RESPONSE_EXCERPT_CHARS = 500


@dataclass
class PostResult:
    """What a webhook POST got: the status and the start of the body, or why it failed."""

    status: int | None = None
    body: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and self.status is not None and 200 <= self.status < 300


def egress_post(
    *, url: str, content: bytes, headers: dict[str, str], timeout: float = 5.0
) -> PostResult:
    """POST `content` through the guard: the one sender of the product's webhooks (alert
    rules, event subscriptions). A redirect is not followed and counts as a failure; an
    answer other than 2xx keeps its status and an excerpt of its body."""
    try:
        with guarded_client(timeout=timeout) as client:
            response = client.post(url, content=content, headers=headers)
            excerpt = response.text[:RESPONSE_EXCERPT_CHARS]
    except (httpx.HTTPError, EgressDenied) as exc:
        return PostResult(error=f"{type(exc).__name__}: {exc}"[:500])
    result = PostResult(status=response.status_code, body=excerpt)
    if not response.is_success:
        result.error = f"HTTP {response.status_code}"
    return result
