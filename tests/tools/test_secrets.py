"""Credentials are encrypted at rest, rotate under a new key, and never show up in plain text:
not in the database, spans, logs, pages, results or error messages."""

from __future__ import annotations

import base64
import io
import json
import logging
import uuid

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from agentops.webhooks.models import WebhookEndpoint
from agentops.widget.models import WidgetKey
from tests.factories import AgentFactory, EndpointFactory
from tests.tools.conftest import make_credential, make_http_tool
from tests.tools.servers import OAuthServer
from tools.executors import ToolContext, tool_execute
from tools.models import Credential
from tracing.emit import Tracer
from tracing.models import Span
from tracing.platform.crypto import SecretUnreadable
from tracing.platform.failures import Failure

API_KEY = "apikey-Zq8v1LmN0pRt"
BEARER = "bearer-Hj2kP9sXw4Yb"
PASSWORD = "password-Ty6uI3oPa1Sd"
CLIENT_SECRET = "clientsecret-Vb7nM2qWe5Rt"


def database_text() -> str:
    """Every row of every table, as text."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT row_to_json(t)::text FROM "{table}" t')  # noqa: S608 - our own table names
            chunks.extend(row[0] for row in cursor.fetchall())
    return "\n".join(chunks)


def forms_of(secret: str, username: str = "svc", client_id: str = "cid") -> list[str]:
    return [
        secret,
        base64.b64encode(f"{username}:{secret}".encode()).decode(),
        base64.b64encode(f"{client_id}:{secret}".encode()).decode(),
    ]


def test_it_keeps_every_secret_out_of_db_spans_logs_and_pages(  # type: ignore[no-untyped-def]
    db, client, alice, api_server, allow_loopback, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    oauth = OAuthServer("cid", CLIENT_SECRET)
    try:
        client.force_login(alice)
        created = {}
        for name, kind, secret, extra in [
            ("key", "api_key", API_KEY, {"header_name": "X-Key"}),
            ("bear", "bearer", BEARER, {}),
            ("basic", "basic", PASSWORD, {"username": "svc"}),
            (
                "oauth",
                "oauth2",
                CLIENT_SECRET,
                {"token_url": oauth.url("/token"), "client_id": "cid"},
            ),
        ]:
            response = client.post(
                reverse("tools:credential_create"),
                {"name": name, "kind": kind, "secret": secret, **extra},
            )
            assert response.status_code == 302, response.content.decode()[:2000]
            created[name] = Credential.objects.get(name=name)
            assert created[name].secret == secret

        @api_server.route("/leak")
        def leak(h):  # type: ignore[no-untyped-def]
            # A careless server that echoes credentials back, in a success and in an error.
            status = 200 if h.query.get("ok") else 502
            h.send_json(status, {"you_sent": dict(h.headers.items())})

        trace_id = uuid.uuid4()
        tracer = Tracer(trace_id, agent="secret-test")
        tools = {}
        for name, credential in created.items():
            url = oauth.url("/resource") if name == "oauth" else api_server.url("/leak") + "?ok=1"
            tools[name] = make_http_tool(f"leak_{name}", url, credential=credential)
            error_tool = make_http_tool(
                f"leak_err_{name}", api_server.url("/leak"), credential=credential
            )
            for tool in (tools[name], error_tool):
                with (
                    pytest.raises(Failure) if tool is error_tool else _nothing(),
                    tracer.span("tool.call", **{"gen_ai.tool.name": tool.name}) as span,
                ):
                    result = tool_execute(
                        tool=tool, arguments={}, context=ToolContext(tracer=tracer)
                    )
                    span.set(**{"gen_ai.tool.call.result": result.content})
                    # Even a careless caller that puts raw header values on a span is redacted.
                    span.set(raw=f"sent {json.dumps(dict(api_server.requests[-1]['headers']))}")
        tracer.flush_now()
        assert Span.objects.filter(trace_id=trace_id, name="tool.call").count() == 8
        assert Span.objects.filter(trace_id=trace_id, status="error").count() == 4

        pages = [
            client.get(reverse("tools:credentials")),
            *[client.get(reverse("tools:credential", args=[c.pk])) for c in created.values()],
            *[client.post(reverse("tools:credential_test", args=[c.pk])) for c in created.values()],
            *[client.get(reverse("tools:detail", args=[t.pk])) for t in tools.values()],
            *[
                client.post(reverse("tools:try", args=[t.pk]), {"arguments": "{}"})
                for t in tools.values()
            ],
            client.get(reverse("tools:list")),
        ]
        assert all(p.status_code == 200 for p in pages)
        rendered = "\n".join(p.content.decode() for p in pages)
        assert "[REDACTED]" in rendered
        assert oauth.issued, "the OAuth2 tool fetched a token"
        span_text = "\n".join(
            json.dumps([s.attributes, s.error_message]) for s in Span.objects.all()
        )
        logs = caplog.text + "".join(capfd.readouterr())
        everything = {
            "database": database_text(),
            "spans": span_text,
            "logs": logs,
            "pages": rendered,
        }
        secrets = [
            *forms_of(API_KEY),
            *forms_of(BEARER),
            *forms_of(PASSWORD),
            *forms_of(CLIENT_SECRET),
            *oauth.issued,
        ]
        for where, text in everything.items():
            for secret in secrets:
                assert secret not in text, f"a secret leaked into the {where}"
    finally:
        oauth.stop()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_it_rotates_every_secret_to_a_new_key(db, settings):  # type: ignore[no-untyped-def]
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIALS_KEYS = [old]
    credential = make_credential("rot", "bearer", BEARER)
    credential.set_access_token("token-abc-123")
    credential.save()
    endpoint = EndpointFactory()
    endpoint.set_api_key("sk-endpoint-key-42")
    endpoint.save()
    webhook = WebhookEndpoint(url="https://hooks.example.com/in")
    webhook.set_secret("whsec-signing-7")
    webhook.save()
    widget_key = WidgetKey(agent=AgentFactory(), name="site", public_key="pk_rotation_test")
    widget_key.set_secret("widget-secret-9")
    widget_key.save()
    before = (
        credential.secret_ciphertext,
        endpoint.api_key_ciphertext,
        webhook.secret_ciphertext,
        widget_key.secret_ciphertext,
    )

    settings.CREDENTIALS_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_credentials_key", stdout=out)
    assert "1 credential secrets, 1 access tokens, 1 endpoint keys" in out.getvalue()
    assert "1 webhook secrets" in out.getvalue()
    assert "1 widget key secrets" in out.getvalue()
    assert BEARER not in out.getvalue()

    settings.CREDENTIALS_KEYS = [new]
    credential = Credential.objects.get(pk=credential.pk)
    for row in (endpoint, webhook, widget_key):
        row.refresh_from_db()
    after = (
        credential.secret_ciphertext,
        endpoint.api_key_ciphertext,
        webhook.secret_ciphertext,
        widget_key.secret_ciphertext,
    )
    assert all(b != a for b, a in zip(before, after, strict=True))
    assert credential.secret == BEARER
    assert credential.access_token == "token-abc-123"
    assert endpoint.api_key == "sk-endpoint-key-42"
    assert webhook.secret == "whsec-signing-7"
    assert widget_key.secret == "widget-secret-9"
    settings.CREDENTIALS_KEYS = [old]
    with pytest.raises(SecretUnreadable):
        _ = Credential.objects.get(pk=credential.pk).secret


def test_it_refuses_to_rotate_when_a_secret_cannot_be_read(db, settings):  # type: ignore[no-untyped-def]
    first, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIALS_KEYS = [first]
    make_credential("a", "bearer", "aaaa-1111")
    settings.CREDENTIALS_KEYS = [other]
    make_credential("b", "bearer", "bbbb-2222")
    stored = dict(Credential.objects.values_list("name", "secret_ciphertext"))
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("rotate_credentials_key", stdout=io.StringIO())
    assert dict(Credential.objects.values_list("name", "secret_ciphertext")) == stored


def test_it_changes_nothing_when_an_endpoint_key_cannot_be_read(db, settings):  # type: ignore[no-untyped-def]
    first, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.CREDENTIALS_KEYS = [first]
    make_credential("a", "bearer", "aaaa-1111")
    settings.CREDENTIALS_KEYS = [other]
    endpoint = EndpointFactory()
    endpoint.set_api_key("sk-lost-key")
    endpoint.save()
    settings.CREDENTIALS_KEYS = [Fernet.generate_key().decode(), first]
    stored = dict(Credential.objects.values_list("name", "secret_ciphertext"))
    with pytest.raises(CommandError, match=f"API key of endpoint {endpoint}"):
        call_command("rotate_credentials_key", stdout=io.StringIO())
    assert dict(Credential.objects.values_list("name", "secret_ciphertext")) == stored


def test_it_generates_a_usable_key():  # type: ignore[no-untyped-def]
    out = io.StringIO()
    call_command("generate_credentials_key", stdout=out)
    key = out.getvalue().strip()
    assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"


def test_it_reports_a_credential_it_cannot_decrypt_instead_of_crashing(  # type: ignore[no-untyped-def]
    db, settings, client, alice, api_server, allow_loopback
):
    settings.CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    credential = make_credential("lost_key", "bearer", "lost-bearer-777")
    tool = make_http_tool("lost_tool", api_server.url("/echo"), credential=credential)
    settings.CREDENTIALS_KEYS = [Fernet.generate_key().decode()]
    before = len(api_server.requests)
    with pytest.raises(Failure) as caught:
        tool_execute(tool=tool, arguments={}, context=ToolContext())
    assert caught.value.failure_class == "auth"
    assert caught.value.may_have_reached_server is False
    assert "CREDENTIALS_KEY" in str(caught.value)
    assert len(api_server.requests) == before
    client.force_login(alice)
    health = client.post(
        reverse("tools:credential_test", args=[credential.pk]), HTTP_HX_REQUEST="true"
    )
    assert health.status_code == 200 and "cannot be decrypted" in health.content.decode()
    trial = client.post(
        reverse("tools:try", args=[tool.pk]), {"arguments": "{}"}, HTTP_HX_REQUEST="true"
    )
    assert 'data-outcome="failed"' in trial.content.decode() and "auth" in trial.content.decode()
