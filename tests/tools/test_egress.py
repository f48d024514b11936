"""The egress guard: decisions with a stubbed resolver (no packet leaves), end to end only
against loopback servers."""

from __future__ import annotations

import socket

import pytest

from tests.tools.conftest import make_http_tool
from tests.tools.servers import LoopbackServer, add_standard_routes
from tools.egress import EgressDenied, egress_resolve
from tools.executors import ToolContext, tool_execute
from tracing.failures import Failure, FailureClass


def resolver_for(*addresses: str):  # type: ignore[no-untyped-def]
    calls = []

    def resolve(host, port, type=0):  # type: ignore[no-untyped-def]
        calls.append(host)
        family = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.20", "private"),
        ("fc00::5", "private"),
        ("169.254.10.20", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.7", "non-public"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::a9fe:a9fe", "cloud metadata"),
        ("2002:a00:1::", "private"),
    ],
)
def test_it_refuses_every_internal_address_class(settings, address, reason):  # type: ignore[no-untyped-def]
    settings.TOOL_EGRESS_ALLOWLIST = []
    resolve = resolver_for(address)
    with pytest.raises(EgressDenied) as caught:
        egress_resolve("service.example.com", 443, resolver=resolve)
    assert f"a {reason} address" in str(caught.value)
    assert caught.value.failure_class == FailureClass.TOOL_ERROR
    assert caught.value.may_have_reached_server is False
    assert resolve.calls == ["service.example.com"]


def test_it_allows_public_addresses_and_refuses_a_name_that_also_points_inside(settings):  # type: ignore[no-untyped-def]
    settings.TOOL_EGRESS_ALLOWLIST = []
    assert egress_resolve("api.example.com", 443, resolver=resolver_for("93.184.215.14")) == [
        "93.184.215.14"
    ]
    assert egress_resolve(
        "api.example.com", 443, resolver=resolver_for("2606:2800:21f:cb07::1")
    ) == ["2606:2800:21f:cb07::1"]
    with pytest.raises(EgressDenied, match="private"):
        egress_resolve("api.example.com", 443, resolver=resolver_for("93.184.215.14", "10.0.0.8"))


def test_it_lets_the_allowlist_open_exactly_its_networks(settings):  # type: ignore[no-untyped-def]
    settings.TOOL_EGRESS_ALLOWLIST = ["10.20.0.0/16", "169.254.169.254/32"]
    assert egress_resolve("db.internal", 80, resolver=resolver_for("10.20.3.4")) == ["10.20.3.4"]
    assert egress_resolve("meta", 80, resolver=resolver_for("169.254.169.254")) == [
        "169.254.169.254"
    ]
    with pytest.raises(EgressDenied, match="private"):
        egress_resolve("db.internal", 80, resolver=resolver_for("10.21.0.1"))
    with pytest.raises(EgressDenied, match="link-local"):
        egress_resolve("meta", 80, resolver=resolver_for("169.254.169.253"))


def test_it_refuses_a_name_that_does_not_resolve(settings):  # type: ignore[no-untyped-def]
    def failing(host, port, type=0):  # type: ignore[no-untyped-def]
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(EgressDenied, match="Cannot resolve"):
        egress_resolve("nowhere.invalid", 80, resolver=failing)


def test_it_checks_the_resolved_address_inside_the_http_executor(db, settings):  # type: ignore[no-untyped-def]
    """A public-looking host name that resolves to the metadata address is refused before
    any connection (the stub resolver stands in for DNS)."""
    from tools.http_executor import HttpExecutor

    settings.TOOL_EGRESS_ALLOWLIST = []
    tool = make_http_tool("meta_probe", "http://innocent.example.com/latest/meta-data/")
    resolve = resolver_for("169.254.169.254")
    with pytest.raises(Failure) as caught:
        HttpExecutor(resolver=resolve).execute(tool, {}, ToolContext())
    assert "cloud metadata" in str(caught.value)
    assert caught.value.may_have_reached_server is False
    assert resolve.calls == ["innocent.example.com"]


def test_it_blocks_loopback_servers_that_are_not_allowlisted(db, settings, api_server):  # type: ignore[no-untyped-def]
    settings.TOOL_EGRESS_ALLOWLIST = []
    before = len(api_server.requests)
    for i, url in enumerate([api_server.url("/echo"), f"http://localhost:{api_server.port}/echo"]):
        tool = make_http_tool(f"loop_{i}", url)
        with pytest.raises(Failure) as caught:
            tool_execute(tool=tool, arguments={}, context=ToolContext())
        assert caught.value.failure_class == FailureClass.TOOL_ERROR
        assert "loopback address" in str(caught.value)
        assert caught.value.may_have_reached_server is False
    assert len(api_server.requests) == before


def test_it_checks_every_redirect_hop_against_the_allowlist(db, settings, api_server):  # type: ignore[no-untyped-def]
    """127.0.0.1 is allowlisted; it redirects to 127.0.0.2, which is not: refused, and the
    second server never sees a request."""
    settings.TOOL_EGRESS_ALLOWLIST = ["127.0.0.1/32"]
    other = LoopbackServer("127.0.0.2")
    add_standard_routes(other)
    try:
        target = other.url("/echo")
        tool = make_http_tool("hop", api_server.url("/redirect"), query={"to": target})
        with pytest.raises(Failure) as caught:
            tool_execute(tool=tool, arguments={}, context=ToolContext())
        assert "127.0.0.2" in str(caught.value) and "loopback" in str(caught.value)
        assert caught.value.may_have_reached_server is True  # the first hop did reach 127.0.0.1
        assert other.requests == []
        assert api_server.hits("/redirect") >= 1

        settings.TOOL_EGRESS_ALLOWLIST = ["127.0.0.1/32", "127.0.0.2/32"]
        result = tool_execute(tool=tool, arguments={}, context=ToolContext())
        assert '"path": "/echo"' in result.content
        assert len(other.requests) == 1
    finally:
        other.stop()
