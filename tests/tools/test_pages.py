"""The tool admin pages: roles, editing with schema checks, versions, try it, stats."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from agentops.models import Agent
from tests.factories import AgentFactory
from tests.tools.conftest import make_credential, make_http_tool
from tools.access import tool_access
from tools.models import ToolDefinition, ToolVersion
from tools.registry import python_tool
from tracing.models import Span


@python_tool(description="Multiply two numbers (a test tool).")
def pages_multiply(a: float, b: float = 2.0) -> float:
    return a * b


def http_form(**overrides: object) -> dict[str, object]:
    data = {
        "name": "get_order",
        "description": "Look up an order.",
        "kind": "http",
        "parameters": json.dumps(
            {
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            }
        ),
        "http_method": "GET",
        "http_url": "https://api.example.com/orders/{{order_id}}",
        "http_query": "",
        "http_headers": "",
        "http_body_format": "",
        "http_body": "",
        "response_mode": "json",
        "response_json_path": "$.order",
        "response_max_chars": "4000",
        "max_response_bytes": "100000",
        "follow_redirects": "on",
        "timeout_seconds": "5",
        "retry_max_attempts": "3",
        "retry_base_seconds": "0.2",
        "retry_cap_seconds": "5",
        "idempotent": "on",
        "enabled": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


PAGES = [
    "tools:list",
    "tools:create",
    "tools:credentials",
    "tools:credential_create",
    "tools:mcp_list",
    "tools:mcp_create",
]


def test_it_lets_only_admins_in(client, alice, bob, charlie):  # type: ignore[no-untyped-def]
    tool = make_http_tool("guarded", "https://api.example.com/x")
    urls = [reverse(name) for name in PAGES] + [
        reverse("tools:detail", args=[tool.pk]),
        reverse("tools:edit", args=[tool.pk]),
    ]
    for url in urls:
        assert client.get(url).status_code == 302  # to the login page
    for user in (bob, charlie):
        client.force_login(user)
        for url in urls:
            assert client.get(url).status_code == 403, url
        assert (
            client.post(reverse("tools:try", args=[tool.pk]), {"arguments": "{}"}).status_code
            == 403
        )
    client.force_login(alice)
    for url in urls:
        assert client.get(url).status_code == 200, url
    assert 'href="/tools/"' in client.get(reverse("home")).content.decode()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        (
            {"parameters": '{"type": "object", "properties": {'},
            "parameters",
            "not valid JSON: Expecting",
        ),
        (
            {"parameters": '{"type": "object", "properties": {"n": {"type": "nonsense"}}}'},
            "parameters",
            "Not a valid JSON schema at properties/n/type",
        ),
        (
            {"parameters": '{"type": "array"}'},
            "parameters",
            "must be a schema of &quot;type&quot;: &quot;object&quot;",
        ),
        ({"name": "get order"}, "name", "A tool name is a function name"),
        (
            {"http_url": "https://api.example.com/{{customer}}"},
            "http_url",
            "{{customer}} is not one of",
        ),
        (
            {"http_url": "https://{{order_id}}.example.com/"},
            "http_url",
            "may not stand in the host",
        ),
        ({"http_url": "ftp://example.com/"}, "http_url", "must start with http"),
        (
            {"http_body_format": "json", "http_method": "POST", "http_body": '{"id": {{order_id}'},
            "http_body",
            "does not give valid JSON",
        ),
        ({"response_json_path": "$.a[?(@.x)]"}, "response_json_path", "Cannot read the JSON path"),
        ({"http_headers": '["not", "an", "object"]'}, "http_headers", "must be a JSON object"),
    ],
)
def test_it_explains_a_bad_definition_and_saves_nothing(client, alice, overrides, field, message):  # type: ignore[no-untyped-def]
    client.force_login(alice)
    response = client.post(reverse("tools:create"), http_form(**overrides))
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page, page[:3000]
    assert response.context["form"].errors.get(field), response.context["form"].errors
    assert not ToolDefinition.objects.exists()


def test_it_creates_edits_and_versions_a_tool(client, alice):  # type: ignore[no-untyped-def]
    agent = AgentFactory()
    other = AgentFactory()
    client.force_login(alice)
    response = client.post(reverse("tools:create"), http_form(agents=[agent.pk]))
    assert response.status_code == 302
    tool = ToolDefinition.objects.get(name="get_order")
    assert tool.version == 1 and list(Agent.objects.filter(tools=tool)) == [agent]
    assert tool.http_config["url"] == "https://api.example.com/orders/{{order_id}}"
    assert tool.http_config["response"] == {
        "mode": "json",
        "json_path": "$.order",
        "max_chars": 4000,
        "include_status": False,
    }

    edit = reverse("tools:edit", args=[tool.pk])
    assert "api.example.com/orders/{{order_id}}" in client.get(edit).content.decode()
    client.post(
        edit,
        http_form(
            description="Look up one order by id.", timeout_seconds="8", agents=[agent.pk, other.pk]
        ),
    )
    tool.refresh_from_db()
    assert tool.version == 2 and tool.timeout_seconds == 8
    assert set(Agent.objects.filter(tools=tool)) == {agent, other}
    client.post(
        edit,
        http_form(
            description="Look up one order by id.", timeout_seconds="8", agents=[agent.pk, other.pk]
        ),
    )
    tool.refresh_from_db()
    assert tool.version == 2, "an unchanged definition is not a new version"
    assert (
        ToolVersion.objects.get(tool=tool, version=1).snapshot["description"] == "Look up an order."
    )

    page = client.get(reverse("tools:detail", args=[tool.pk])).content.decode()
    assert "v2" in page and "v1" in page
    assert f"{agent.slug}, {other.slug}" in page or f"{other.slug}, {agent.slug}" in page
    listed = client.get(reverse("tools:list")).content.decode()
    assert ">2</td>" in listed
    assert "description, timeout_seconds" in page


def test_it_versions_edits_made_in_the_django_admin_too(client, alice):  # type: ignore[no-untyped-def]
    alice.is_staff = alice.is_superuser = True
    alice.save()
    tool = make_http_tool("admin_edit", "https://api.example.com/a")
    client.force_login(alice)
    url = reverse("admin:tools_tooldefinition_change", args=[tool.pk])
    form = client.get(url).context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data.update(
        description="Changed in the admin.",
        parameters=json.dumps(tool.parameters),
        http_config=json.dumps(tool.http_config),
        idempotent="on",
        enabled="on",
    )
    data.pop("requires_approval", None)
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    tool.refresh_from_db()
    assert tool.version == 2 and tool.description == "Changed in the admin."
    assert ToolVersion.objects.filter(tool=tool).count() == 2


def test_it_refuses_a_fallback_loop(client, alice):  # type: ignore[no-untyped-def]
    first = make_http_tool("first_tool", "https://api.example.com/a")
    second = make_http_tool("second_tool", "https://api.example.com/b")
    second.fallback = first
    second.save()
    client.force_login(alice)
    form = http_form(
        name="first_tool",
        http_url="https://api.example.com/a",
        parameters="",
        response_json_path="",
        fallback=second.pk,
    )
    response = client.post(reverse("tools:edit", args=[first.pk]), form)
    assert response.status_code == 200
    assert "loop of fallbacks" in response.content.decode()
    first.refresh_from_db()
    assert first.fallback is None and first.version == 1


def test_it_takes_a_python_tools_schema_from_its_type_hints(client, alice):  # type: ignore[no-untyped-def]
    client.force_login(alice)
    page = client.get(reverse("tools:create")).content.decode()
    assert "pages_multiply" in page
    response = client.post(
        reverse("tools:create"),
        http_form(
            name="multiply",
            kind="python",
            python_function="pages_multiply",
            description="",
            parameters="",
            http_url="",
        ),
    )
    assert response.status_code == 302, response.context["form"].errors
    tool = ToolDefinition.objects.get(name="multiply")
    assert tool.parameters["required"] == ["a"]
    assert tool.parameters["properties"]["b"] == {"type": "number", "default": 2.0}
    assert tool.description == "Multiply two numbers (a test tool)."
    response = client.post(
        reverse("tools:try", args=[tool.pk]),
        {"arguments": '{"a": 3, "b": 4}'},
        HTTP_HX_REQUEST="true",
    )
    assert 'data-outcome="ok"' in response.content.decode()
    assert '<pre class="result">12</pre>' in response.content.decode()


def test_it_tries_a_tool_and_shows_request_response_and_timing(  # type: ignore[no-untyped-def]
    client, alice, api_server, allow_loopback
):
    secret = "try-it-secret-31337"
    credential = make_credential("try_key", "api_key", secret, header_name="X-Key")
    tool = make_http_tool(
        "try_echo",
        api_server.url("/echo"),
        credential=credential,
        method="POST",
        body_format="json",
        body='{"q": "{{q}}"}',
        parameters={"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    )
    client.force_login(alice)
    url = reverse("tools:try", args=[tool.pk])
    response = client.post(url, {"arguments": '{"q": "<b>hello</b>"}'}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and 'id="try-result"' in html  # the partial only
    assert 'data-outcome="ok"' in html and "data-elapsed" in html and " ms" in html
    assert f"POST {api_server.url('/echo')}" in html
    assert "X-Key: [REDACTED]" in html
    assert "HTTP 200" in html
    assert "&lt;b&gt;hello&lt;/b&gt;" in html and "<b>hello</b>" not in html
    assert secret not in html

    before = len(api_server.requests)
    bad = client.post(url, {"arguments": '{"q": 5}'}, HTTP_HX_REQUEST="true").content.decode()
    assert 'data-outcome="invalid"' in bad and "q: 5 is not of type" in bad
    broken = client.post(url, {"arguments": '{"q": '}, HTTP_HX_REQUEST="true").content.decode()
    assert "not valid JSON" in broken
    assert len(api_server.requests) == before

    failing = make_http_tool("try_limit", api_server.url("/ratelimit"))
    html = client.post(
        reverse("tools:try", args=[failing.pk]), {"arguments": "{}"}
    ).content.decode()
    assert "<html" in html  # without htmx: the whole page
    assert 'data-outcome="failed"' in html and "rate_limit" in html and "retry after 7.0 s" in html


def test_it_shows_per_tool_stats_from_spans(client, alice):  # type: ignore[no-untyped-def]
    tool = make_http_tool("stats_tool", "https://api.example.com/s")
    now = timezone.now()
    trace = uuid.uuid4()
    rows = []
    for i in range(20):
        failed = i % 5 == 0
        rows.append(
            Span(
                trace_id=trace,
                seq=i + 1,
                span_id=f"{i:016x}",
                name="tool.call",
                status="error" if failed else "ok",
                error_class="timeout" if failed else "",
                error_message=f"stats_tool timed out #{i}" if failed else "",
                start_time=now - timedelta(minutes=i),
                end_time=now,
                duration_ms=float((i + 1) * 10),
                attributes={"gen_ai.tool.name": "stats_tool"},
            )
        )
    rows.append(
        Span(
            trace_id=trace,
            seq=99,
            span_id="f" * 16,
            name="tool.call",
            start_time=now,
            end_time=now,
            duration_ms=9999,
            attributes={"gen_ai.tool.name": "another_tool"},
        )
    )
    Span.objects.bulk_create(rows)
    client.force_login(alice)
    page = client.get(reverse("tools:detail", args=[tool.pk])).content.decode()
    assert 'data-stat="calls">20<' in page
    assert 'data-stat="error-rate">20%<' in page
    assert 'data-stat="p95">191 ms<' in page  # percentile_cont over 10..200 ms
    assert "stats_tool timed out #0" in page and "stats_tool timed out #15" in page
    access = tool_access()
    assert access is not None
    callers = [AgentFactory().pk, AgentFactory().pk]
    access.callers_set(tool_id=tool.pk, caller_ids=callers, actor=alice)
    listing = client.get(reverse("tools:list")).content.decode()
    row = listing[listing.index('data-tool="stats_tool"') :].split("</tr>")[0]
    cells = re.findall(r"<td>([^<]*)</td>", row)
    assert cells[-4:] == ["2", "20", "20%", "191 ms"]  # agents, calls, errors, p95


def test_it_keeps_a_credentials_secret_write_only(client, alice):  # type: ignore[no-untyped-def]
    client.force_login(alice)
    missing = client.post(
        reverse("tools:credential_create"), {"name": "nokey", "kind": "bearer", "secret": ""}
    )
    assert "Enter the secret" in missing.content.decode()
    client.post(
        reverse("tools:credential_create"), {"name": "svc", "kind": "basic", "secret": "pw-first-1"}
    )
    from tools.models import Credential

    assert not Credential.objects.filter(name="svc").exists()  # basic needs a username
    client.post(
        reverse("tools:credential_create"),
        {"name": "svc", "kind": "basic", "username": "svc", "secret": "pw-first-1"},
    )
    credential = Credential.objects.get(name="svc")
    page = client.get(reverse("tools:credential", args=[credential.pk])).content.decode()
    assert "pw-first-1" not in page and 'data-secret-state="stored"' in page
    client.post(
        reverse("tools:credential", args=[credential.pk]),
        {"name": "svc", "kind": "basic", "username": "svc2", "secret": ""},
    )
    credential.refresh_from_db()
    assert credential.username == "svc2" and credential.secret == "pw-first-1"
    client.post(
        reverse("tools:credential", args=[credential.pk]),
        {"name": "svc", "kind": "basic", "username": "svc2", "secret": "pw-second-2"},
    )
    credential.refresh_from_db()
    assert credential.secret == "pw-second-2"
    health = client.post(
        reverse("tools:credential_test", args=[credential.pk]), HTTP_HX_REQUEST="true"
    )
    assert 'id="health"' in health.content.decode() and "<html" not in health.content.decode()
    assert "Stored and decryptable" in health.content.decode()
