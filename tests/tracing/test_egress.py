"""The egress guard (tracing/platform/egress.py): decisions with a stubbed resolver (no packet leaves)."""

from __future__ import annotations

import socket

import pytest

from tests.tracing.helpers import resolver_for
from tracing.platform.egress import EgressDenied, egress_resolve
from tracing.platform.failures import FailureClass


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
