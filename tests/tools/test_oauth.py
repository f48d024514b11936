"""OAuth2 client credentials against a real token endpoint that counts the tokens it issues."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.tools.conftest import make_credential, make_http_tool
from tests.tools.servers import OAuthServer
from tools.credentials import credential_test
from tools.executors import ToolContext, tool_execute
from tools.models import Credential
from tracing.platform.failures import Failure, FailureClass

CLIENT_ID = "agentops-client"
CLIENT_SECRET = "client-secret-8d1e5f7a"

pytestmark = pytest.mark.usefixtures("allow_loopback")


@pytest.fixture
def oauth() -> Iterator[OAuthServer]:
    server = OAuthServer(CLIENT_ID, CLIENT_SECRET)
    yield server
    server.stop()


@pytest.fixture
def credential(db, oauth):  # type: ignore[no-untyped-def]
    return make_credential(
        "orders_oauth",
        "oauth2",
        CLIENT_SECRET,
        token_url=oauth.url("/token"),
        client_id=CLIENT_ID,
        scope="orders:read",
    )


def orders_tool(oauth, credential):  # type: ignore[no-untyped-def]
    return make_http_tool(
        "list_orders",
        oauth.url("/resource"),
        credential=credential,
        response={"mode": "json", "json_path": "$.orders"},
    )


def test_it_fetches_a_token_once_and_reuses_it(oauth, credential):  # type: ignore[no-untyped-def]
    tool = orders_tool(oauth, credential)
    assert tool_execute(tool=tool, arguments={}, context=ToolContext()).content == "[1, 2, 3]"
    assert tool_execute(tool=tool, arguments={}, context=ToolContext()).content == "[1, 2, 3]"
    assert len(oauth.issued) == 1
    token_request = next(r for r in oauth.requests if r["path"] == "/token")
    assert "scope=orders%3Aread" in token_request["body"]
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.access_token == oauth.issued[0]
    assert oauth.issued[0] not in stored.access_token_ciphertext
    assert stored.token_expires_at > timezone.now() + timedelta(minutes=59)


def test_it_refreshes_an_expired_or_expiring_token_before_use(oauth, credential):  # type: ignore[no-untyped-def]
    tool = orders_tool(oauth, credential)
    tool_execute(tool=tool, arguments={}, context=ToolContext())
    assert len(oauth.issued) == 1
    for expires in (timezone.now() - timedelta(seconds=5), timezone.now() + timedelta(seconds=20)):
        Credential.objects.filter(pk=credential.pk).update(token_expires_at=expires)
        tool.credential = Credential.objects.get(pk=credential.pk)
        before = len(oauth.issued)
        resource_calls = oauth.hits("/resource")
        assert tool_execute(tool=tool, arguments={}, context=ToolContext()).content == "[1, 2, 3]"
        assert len(oauth.issued) == before + 1
        # Refreshed before use: the resource saw only the new token, once.
        assert oauth.hits("/resource") == resource_calls + 1
        assert oauth.requests[-1]["headers"]["Authorization"] == f"Bearer {oauth.issued[-1]}"


def test_it_refreshes_once_after_a_401_and_repeats_the_call(oauth, credential):  # type: ignore[no-untyped-def]
    tool = orders_tool(oauth, credential)
    tool_execute(tool=tool, arguments={}, context=ToolContext())
    # The server revokes the token although it has not expired by our clock.
    oauth.issued.append("issued-elsewhere")
    resource_calls = oauth.hits("/resource")
    result = tool_execute(tool=tool, arguments={}, context=ToolContext())
    assert result.content == "[1, 2, 3]"
    assert len(oauth.issued) == 3
    assert oauth.hits("/resource") == resource_calls + 2
    assert Credential.objects.get(pk=credential.pk).access_token == oauth.issued[-1]


def test_it_gives_up_after_one_refresh_when_the_server_keeps_refusing(oauth, credential):  # type: ignore[no-untyped-def]
    tool = orders_tool(oauth, credential)
    oauth.reject_all = True
    with pytest.raises(Failure) as caught:
        tool_execute(tool=tool, arguments={}, context=ToolContext())
    failure = caught.value
    assert failure.failure_class == FailureClass.TOOL_ERROR
    assert failure.status_code == 401
    assert len(oauth.issued) == 2  # before use, then once after the 401: no loop
    assert oauth.hits("/resource") == 2
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.last_failure_at is not None and "HTTP 401" in stored.last_failure
    for token in oauth.issued:
        assert token not in str(failure) and token not in stored.last_failure


def test_it_reports_a_refused_client_without_calling_the_resource(oauth, db):  # type: ignore[no-untyped-def]
    credential = make_credential(
        "wrong_client",
        "oauth2",
        "not-the-secret-123",
        token_url=oauth.url("/token"),
        client_id=CLIENT_ID,
    )
    tool = orders_tool(oauth, credential)
    with pytest.raises(Failure) as caught:
        tool_execute(tool=tool, arguments={}, context=ToolContext())
    assert caught.value.failure_class == FailureClass.TOOL_ERROR
    assert caught.value.may_have_reached_server is False
    assert "token request failed" in str(caught.value) and "HTTP 401" in str(caught.value)
    assert "not-the-secret-123" not in str(caught.value)
    assert oauth.hits("/resource") == 0
    stored = Credential.objects.get(pk=credential.pk)
    assert "token request failed" in stored.last_failure
    check = credential_test(credential=stored)
    assert check.ok is False and "HTTP 401" in check.message


def test_it_tests_a_credential_against_its_test_url(oauth, credential):  # type: ignore[no-untyped-def]
    credential.test_url = oauth.url("/resource")
    credential.save()
    check = credential_test(credential=credential)
    assert check.ok, check.message
    assert "token endpoint issued a token" in check.message and "HTTP 200" in check.message
    stored = Credential.objects.get(pk=credential.pk)
    assert stored.last_used_at is not None
    oauth.reject_all = True
    check = credential_test(credential=stored)
    assert check.ok is False and check.status_code == 401
