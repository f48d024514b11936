"""The egress guard in the tools' outbound requests (tool calls, OAuth2, credential tests), end
to end only against loopback servers."""

from __future__ import annotations

import pytest

from tests.tools.conftest import make_http_tool
from tests.tools.servers import LoopbackServer, add_standard_routes
from tests.tracing.helpers import resolver_for
from tools.executors import ToolContext, tool_execute
from tracing.platform.failures import Failure, FailureClass


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


def test_it_guards_oauth2_token_fetches_and_credential_tests(db, settings):  # type: ignore[no-untyped-def]
    from tests.tools.conftest import make_credential
    from tests.tools.servers import OAuthServer
    from tools.credentials import credential_test

    settings.TOOL_EGRESS_ALLOWLIST = []
    oauth = OAuthServer("client", "client-secret-2b9d")
    try:
        token = make_credential(
            "guarded_oauth",
            "oauth2",
            "client-secret-2b9d",
            token_url=oauth.url("/token"),
            client_id="client",
        )
        tested = make_credential(
            "guarded_key", "api_key", "key-5c1e9a", test_url=oauth.url("/resource")
        )
        for credential in (token, tested):
            check = credential_test(credential=credential)
            assert not check.ok and "loopback address" in check.message
        assert oauth.requests == []
    finally:
        oauth.stop()


def test_it_ignores_proxy_settings_of_the_environment(db, settings, monkeypatch, api_server):  # type: ignore[no-untyped-def]
    settings.TOOL_EGRESS_ALLOWLIST = ["127.0.0.1/32"]
    proxy = LoopbackServer()
    add_standard_routes(proxy)
    try:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy.url())
        tool = make_http_tool("direct", api_server.url("/echo"))
        assert (
            '"path": "/echo"'
            in tool_execute(tool=tool, arguments={}, context=ToolContext()).content
        )
        assert proxy.requests == []
    finally:
        proxy.stop()
