"""HTTP tools against real loopback servers: requests built from templates, responses mapped,
every failure classified, limits enforced."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from django.core.exceptions import ValidationError

from agentops.testing.processes import free_port
from tests.tools.conftest import make_credential, make_http_tool
from tools.executors import ToolContext, tool_execute
from tools.models import ToolDefinition
from tracing.platform.failures import Failure, FailureClass

pytestmark = pytest.mark.usefixtures("allow_loopback")

ORDER_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string"},
        "note": {"type": "string"},
        "count": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["order_id"],
    "additionalProperties": False,
}


def run(tool, arguments=None, **context):  # type: ignore[no-untyped-def]
    return tool_execute(tool=tool, arguments=arguments or {}, context=ToolContext(**context))


def failure_of(tool, arguments=None):  # type: ignore[no-untyped-def]
    with pytest.raises(Failure) as caught:
        run(tool, arguments)
    return caught.value


def test_it_fills_templates_safely_from_the_arguments(db, api_server):  # type: ignore[no-untyped-def]
    tool = make_http_tool(
        "update_order",
        api_server.url("/echo") + "?order={{order_id}}",
        parameters=ORDER_SCHEMA,
        method="POST",
        query={"tag": "{{tags}}", "missing": "{{count}}"},
        headers={"X-Order": "order-{{order_id}}"},
        body_format="json",
        body='{"id": "{{order_id}}", "note": "re: {{note}}", "count": {{count}}, "tags": {{tags}}}',
        response={"mode": "json", "json_path": "$.body"},
    )
    hostile = 'a/../../admin?x=1#"}, "admin": true, "x": {"'
    result = run(tool, {"order_id": hostile, "note": 'say "hi"\n', "tags": ["a", "b&c"]})
    request = api_server.requests[-1]
    assert request["method"] == "POST"
    assert request["path"] == "/echo"
    assert request["query"]["order"] == [hostile]
    assert request["query"]["tag"] == ["a", "b&c"]
    assert "missing" not in request["query"]
    assert request["headers"]["X-Order"] == f"order-{hostile}"
    sent = json.loads(request["body"])
    assert sent == {"id": hostile, "note": 're: say "hi"\n', "count": None, "tags": ["a", "b&c"]}
    assert json.loads(result.content) == sent
    assert result.status_code == 200


def test_it_refuses_a_header_value_that_would_break_the_header_line(db, api_server):  # type: ignore[no-untyped-def]
    tool = make_http_tool(
        "header_inject",
        api_server.url("/echo"),
        parameters=ORDER_SCHEMA,
        headers={"X-Order": "{{order_id}}"},
    )
    before = len(api_server.requests)
    failure = failure_of(tool, {"order_id": "1\r\nX-Admin: yes"})
    assert failure.failure_class == FailureClass.TOOL_ERROR
    assert "line breaks" in str(failure)
    assert failure.may_have_reached_server is False
    assert len(api_server.requests) == before


def test_it_never_sends_arguments_that_fail_the_schema(db, api_server):  # type: ignore[no-untyped-def]
    tool = make_http_tool("strict", api_server.url("/echo"), parameters=ORDER_SCHEMA)
    before = len(api_server.requests)
    for bad in [
        {},
        {"order_id": 5},
        {"order_id": "1", "extra": True},
        {"order_id": "1", "count": "many"},
    ]:
        failure = failure_of(tool, bad)
        assert failure.failure_class == FailureClass.INVALID_REQUEST
        assert failure.may_have_reached_server is False
    assert "order_id" in str(failure_of(tool, {}))
    assert len(api_server.requests) == before


def test_it_never_fetches_a_schema_reference_to_validate_arguments(db, api_server):  # type: ignore[no-untyped-def]
    remote = {"type": "object", "properties": {"order_id": {"$ref": api_server.url("/schema")}}}
    with pytest.raises(ValidationError, match=r"A \$ref must point inside the schema"):
        make_http_tool("fetching", api_server.url("/echo"), parameters=remote)
    # One stored before the check (or sent by an MCP server): its arguments are refused with a
    # message the model can read, and the reference is never fetched.
    tool = make_http_tool("fetching", api_server.url("/echo"), parameters=ORDER_SCHEMA)
    echoes = api_server.hits("/echo")  # the server is shared by this module's tests
    ToolDefinition.objects.filter(pk=tool.pk).update(parameters=remote)
    tool.refresh_from_db()
    failure = failure_of(tool, {"order_id": "1"})
    assert failure.failure_class == FailureClass.INVALID_REQUEST
    assert "reference that cannot be resolved" in str(failure)
    assert api_server.hits("/schema") == 0 and api_server.hits("/echo") == echoes
    local = {
        "type": "object",
        "$defs": {"id": {"type": "string"}},
        "properties": {"order_id": {"$ref": "#/$defs/id"}},
    }
    ToolDefinition.objects.filter(pk=tool.pk).update(parameters=local)
    tool.refresh_from_db()
    assert "order_id" in str(failure_of(tool, {"order_id": 5}))
    assert json.loads(run(tool, {"order_id": "7"}).content)


def test_it_maps_responses_by_json_path_body_or_status(db, api_server):  # type: ignore[no-untyped-def]
    ids = make_http_tool(
        "ids",
        api_server.url("/items"),
        response={"mode": "json", "json_path": "$.data.items[*].id"},
    )
    result = run(ids)
    assert json.loads(result.content) == [1, 2] and result.data == [1, 2]
    first = make_http_tool(
        "first",
        api_server.url("/items"),
        response={"mode": "json", "json_path": "data.items[0].name", "include_status": True},
    )
    assert run(first).content == "HTTP 200\none"
    text = make_http_tool(
        "text", api_server.url("/text"), response={"mode": "body", "max_chars": 100}
    )
    content = run(text).content
    assert content.startswith("x" * 100) and "truncated 4900 chars" in content
    status = make_http_tool(
        "status", api_server.url("/echo"), method="DELETE", response={"mode": "status"}
    )
    assert run(status).content == "HTTP 200"


def test_it_sends_an_idempotency_key_with_writes_of_a_run(db, api_server):  # type: ignore[no-untyped-def]
    import uuid

    tool = make_http_tool("create", api_server.url("/echo"), method="POST")
    run_id = uuid.uuid4()
    run(tool, run_id=run_id, step=3, call_id="call_1")
    assert api_server.requests[-1]["headers"]["Idempotency-Key"] == f"{run_id}:3:call_1"


@pytest.mark.parametrize(
    ("path", "failure_class", "status", "retry_after"),
    [
        ("/ratelimit", FailureClass.RATE_LIMIT, 429, 7.0),
        ("/boom", FailureClass.SERVER_ERROR, 500, None),
        ("/unavailable", FailureClass.SERVER_ERROR, 503, 3.0),
        ("/missing", FailureClass.TOOL_ERROR, 404, None),
    ],
)
def test_it_classifies_http_error_statuses(
    db, api_server, path, failure_class, status, retry_after
):  # type: ignore[no-untyped-def]
    tool = make_http_tool(f"status_{status}", api_server.url(path))
    failure = failure_of(tool)
    assert failure.failure_class == failure_class
    assert failure.status_code == status
    assert failure.retry_after == retry_after
    assert failure.may_have_reached_server is True
    assert f"HTTP {status}" in str(failure)


def test_it_reads_retry_after_given_as_a_date(db, api_server):  # type: ignore[no-untyped-def]
    failure = failure_of(make_http_tool("rl_date", api_server.url("/ratelimit-date")))
    assert failure.failure_class == FailureClass.RATE_LIMIT
    assert 100 < failure.retry_after <= 121


def test_it_classifies_a_slow_server_as_a_timeout(db, api_server):  # type: ignore[no-untyped-def]
    slow = make_http_tool("slow", api_server.url("/slow") + "?s=2", timeout=0.3)
    failure = failure_of(slow)
    assert failure.failure_class == FailureClass.TIMEOUT
    assert failure.may_have_reached_server is True
    drip = make_http_tool("drip", api_server.url("/drip"), timeout=0.5)
    failure = failure_of(drip)
    assert failure.failure_class == FailureClass.TIMEOUT
    assert failure.may_have_reached_server is True


def test_it_classifies_a_refused_connection_as_never_sent(db):  # type: ignore[no-untyped-def]
    failure = failure_of(make_http_tool("refused", f"http://127.0.0.1:{free_port()}/x"))
    assert failure.failure_class == FailureClass.CONNECTION
    assert failure.may_have_reached_server is False


def test_it_classifies_a_connect_timeout_as_never_sent(db):  # type: ignore[no-untyped-def]
    """A listener whose accept queue is full drops new SYNs: the connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        failure = failure_of(make_http_tool("syn_drop", f"http://127.0.0.1:{port}/x", timeout=0.5))
        assert failure.failure_class == FailureClass.TIMEOUT
        assert failure.may_have_reached_server is False
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_it_classifies_a_dropped_connection_as_possibly_sent(db, api_server):  # type: ignore[no-untyped-def]
    failure = failure_of(make_http_tool("hangup", api_server.url("/hangup")))
    assert failure.failure_class == FailureClass.CONNECTION
    assert failure.may_have_reached_server is True


def test_it_classifies_an_unreadable_answer_as_a_bad_response(db, api_server):  # type: ignore[no-untyped-def]
    failure = failure_of(
        make_http_tool("notjson", api_server.url("/notjson"), response={"mode": "json"})
    )
    assert failure.failure_class == FailureClass.BAD_RESPONSE
    failure = failure_of(
        make_http_tool(
            "nopath",
            api_server.url("/items"),
            response={"mode": "json", "json_path": "$.data.orders"},
        )
    )
    assert failure.failure_class == FailureClass.BAD_RESPONSE
    assert "$.data.orders" in str(failure)


def test_it_enforces_the_response_size_limit_while_streaming(db, api_server):  # type: ignore[no-untyped-def]
    api_server.big_finished = False
    failure = failure_of(make_http_tool("big", api_server.url("/big"), max_response_bytes=100_000))
    assert failure.failure_class == FailureClass.BAD_RESPONSE
    assert "100000 bytes" in str(failure)
    declared = failure_of(
        make_http_tool("declared", api_server.url("/big-declared"), max_response_bytes=1000)
    )
    assert declared.failure_class == FailureClass.BAD_RESPONSE
    assert "300000 bytes" in str(declared)
    ok = make_http_tool("declared_ok", api_server.url("/big-declared"), max_response_bytes=400_000)
    assert run(ok).status_code == 200


def test_it_follows_redirects_but_stops_at_the_limit(db, api_server):  # type: ignore[no-untyped-def]
    hop = make_http_tool(
        "hop_ok",
        api_server.url("/redirect"),
        query={"to": "/items"},
        response={"mode": "json", "json_path": "$.data.items[0].id"},
    )
    assert run(hop).content == "1"
    loop = make_http_tool("loop", api_server.url("/loop"))
    failure = failure_of(loop)
    assert failure.failure_class == FailureClass.BAD_RESPONSE
    assert "More than 5 redirects" in str(failure)
    assert api_server.hits("/loop") == 6


def test_it_drops_credentials_on_a_redirect_to_another_origin(db, api_server):  # type: ignore[no-untyped-def]
    from tests.tools.servers import LoopbackServer, add_standard_routes

    other = LoopbackServer()  # same address, another port: another origin
    add_standard_routes(other)
    try:
        secret = "s3cr3t-bearer-token-991"
        credential = make_credential("redir_bearer", "bearer", secret)
        tool = make_http_tool(
            "redir_cred",
            api_server.url("/redirect"),
            credential=credential,
            query={"to": other.url("/echo")},
        )
        run(tool)
        assert api_server.requests[-1]["headers"]["Authorization"] == f"Bearer {secret}"
        assert "Authorization" not in other.requests[-1]["headers"]
    finally:
        other.stop()


@pytest.mark.parametrize(
    ("kind", "fields", "header", "expected"),
    [
        ("api_key", {"header_name": "X-Service-Key"}, "X-Service-Key", "{secret}"),
        ("api_key", {}, "X-API-Key", "{secret}"),
        ("bearer", {}, "Authorization", "Bearer {secret}"),
        ("basic", {"username": "svc"}, "Authorization", "Basic {basic}"),
    ],
)
def test_it_authenticates_with_each_credential_kind_and_hides_the_secret(  # type: ignore[no-untyped-def]
    db, api_server, kind, fields, header, expected
):
    import base64

    secret = f"{kind}-secret-value-4711"
    credential = make_credential(f"cred_{kind}_{len(fields)}", kind, secret, **fields)
    tool = make_http_tool(
        f"auth_{kind}_{len(fields)}",
        api_server.url("/echo"),
        credential=credential,
        response={"mode": "json"},
    )
    result = run(tool)
    basic = base64.b64encode(f"svc:{secret}".encode()).decode()
    sent = api_server.requests[-1]["headers"]
    assert sent[header] == expected.format(secret=secret, basic=basic)
    # The server echoed the header back: the model must not see it.
    assert secret not in result.content and basic not in result.content
    assert secret not in json.dumps(result.data) and basic not in json.dumps(result.data)
    assert "[REDACTED]" in result.content
    credential.refresh_from_db()
    assert credential.last_used_at is not None


def test_it_keeps_secrets_out_of_failure_messages(db, api_server):  # type: ignore[no-untyped-def]
    """A server that echoes the key in its error body: the message names the status, not the key."""
    secret = "leaky-api-key-0042"

    @api_server.route("/echo-error")
    def echo_error(h):  # type: ignore[no-untyped-def]
        h.send_json(400, {"error": f"bad key {h.headers.get('X-Api-Key')}"})

    credential = make_credential("leaky", "api_key", secret)
    failure = failure_of(
        make_http_tool("leaky_tool", api_server.url("/echo-error"), credential=credential)
    )
    assert failure.failure_class == FailureClass.TOOL_ERROR
    assert "HTTP 400" in str(failure) and "[REDACTED]" in str(failure)
    assert secret not in str(failure)


def test_it_runs_concurrent_calls_independently(db, api_server):  # type: ignore[no-untyped-def]
    from django.db import connection

    tool = make_http_tool("par", api_server.url("/slow") + "?s=0.2", timeout=3)
    results: list[object] = []

    def call() -> None:
        try:
            results.append(run(tool).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == [200, 200, 200, 200]


def test_it_keeps_connections_alive_between_calls(db, api_server):  # type: ignore[no-untyped-def]
    tool = make_http_tool("keep_alive", api_server.url("/echo"))
    run(tool)
    run(tool)
    first, second = api_server.requests[-2:]
    assert first["peer_port"] == second["peer_port"]  # one TCP connection for both


def test_it_opens_no_pooled_connection_the_allowlist_no_longer_allows(db, api_server, settings):  # type: ignore[no-untyped-def]
    tool = make_http_tool("keep_alive_then_denied", api_server.url("/echo"))
    run(tool)
    settings.TOOL_EGRESS_ALLOWLIST = []
    failure = failure_of(tool)
    assert "loopback" in str(failure) and failure.may_have_reached_server is False


def test_it_reads_a_ref_in_a_value_as_a_value():  # type: ignore[no-untyped-def]
    from tools.schemas import remote_refs

    schema = {
        "type": "object",
        "properties": {
            "link": {"const": {"$ref": "https://example.com/x"}},
            "kind": {"enum": [{"$ref": "file:///etc/passwd"}]},
            "item": {"$ref": "https://example.com/item.json"},
        },
    }
    assert remote_refs(schema) == ["https://example.com/item.json"]
