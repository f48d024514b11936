"""A tool declares that it honours an idempotency key (HTTP: a header; Python and MCP: an
argument), in its form with errors beside the field, kept in its versions and shown on its
page; the key reaches the tool the same on every attempt of a call, and the model never
sees the argument it travels in."""

from __future__ import annotations

import json
import uuid

import pytest
from django.urls import reverse

from agentops.testing.tools import KeyedChargeServer, keyed_charge_tool
from tests.tools.test_pages import http_form
from tools.executors import ToolContext, tool_execute
from tools.models import ToolDefinition, ToolVersion
from tools.registry import get_python_tool, python_tool
from tools.services import python_tools_sync, tool_save


@python_tool(description="Book a seat once per key (a test tool).", idempotent=False)
def book_seat(seat: str, request_key: str = "") -> str:
    return f"{seat} booked under {request_key}"


def keyed_http_form(**overrides: object) -> dict[str, object]:
    return http_form(
        **{
            "name": "create_refund",
            "http_method": "POST",
            "http_url": "https://api.example.com/refunds",
            "http_body_format": "json",
            "http_body": '{"order": "{{order_id}}"}',
            "response_json_path": "",
            "idempotent": None,
            "honours_idempotency_key": "on",
            "http_idempotency_header": "Idempotency-Key",
            **overrides,
        }
    )


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"http_method": "GET"}, "honours_idempotency_key", "carries no idempotency key"),
        ({"http_idempotency_header": ""}, "http_idempotency_header", "Name the header"),
        ({"http_idempotency_header": "Idem Key:"}, "http_idempotency_header", "A header name"),
        (
            {"kind": "python", "python_function": "book_seat", "idempotency_key_argument": ""},
            "idempotency_key_argument",
            "Name the argument",
        ),
        (
            {
                "kind": "python",
                "python_function": "book_seat",
                "idempotency_key_argument": "nonce",
            },
            "idempotency_key_argument",
            "takes no argument named nonce",
        ),
        (
            {"kind": "mcp", "mcp_tool_name": "book", "idempotency_key_argument": "1x"},
            "idempotency_key_argument",
            "An argument name",
        ),
    ],
)
def test_it_puts_a_declaration_that_cannot_work_beside_its_field(  # type: ignore[no-untyped-def]
    client, alice, overrides, field, message
):
    client.force_login(alice)
    response = client.post(reverse("tools:create"), keyed_http_form(**overrides))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and message in " ".join(errors[field]), errors
    page = response.content.decode()
    assert f'id="id_{field}_error"' in page  # rendered beside the field
    assert not ToolDefinition.objects.exists()


def test_it_saves_shows_and_versions_the_declaration(client, alice):  # type: ignore[no-untyped-def]
    client.force_login(alice)
    form = keyed_http_form(http_idempotency_header="X-Request-Key")
    response = client.post(reverse("tools:create"), form)
    assert response.status_code == 302, response.context["form"].errors
    tool = ToolDefinition.objects.get(name="create_refund")
    assert tool.honours_idempotency_key
    assert tool.http_config["idempotency_header"] == "X-Request-Key"
    (first,) = ToolVersion.objects.filter(tool=tool)
    assert first.snapshot["honours_idempotency_key"] is True

    page = client.get(reverse("tools:detail", args=[tool.pk])).content.decode()
    assert "honoured, sent in the header <code>X-Request-Key</code>" in page
    edit = client.get(reverse("tools:edit", args=[tool.pk])).content.decode()
    assert 'value="X-Request-Key"' in edit and 'id="id_honours_idempotency_key" checked' in edit

    form.pop("honours_idempotency_key")
    response = client.post(reverse("tools:edit", args=[tool.pk]), form)
    assert response.status_code == 302, response.context["form"].errors
    tool.refresh_from_db()
    assert tool.version == 2 and not tool.honours_idempotency_key
    page = client.get(reverse("tools:detail", args=[tool.pk])).content.decode()
    assert "not honoured: a call whose outcome is unknown after a crash is handed to a person" in (
        page
    )
    assert "honours_idempotency_key" in page  # the versions table names the change


def test_an_edit_that_does_not_touch_the_header_makes_no_new_version(client, alice):  # type: ignore[no-untyped-def]
    client.force_login(alice)
    client.post(reverse("tools:create"), http_form())
    tool = ToolDefinition.objects.get(name="get_order")
    assert "idempotency_header" not in tool.http_config
    form = http_form(http_idempotency_header="Idempotency-Key")
    response = client.post(reverse("tools:edit", args=[tool.pk]), form)
    assert response.status_code == 302
    tool.refresh_from_db()
    assert tool.version == 1 and "idempotency_header" not in tool.http_config


def test_a_python_tool_gets_the_key_in_its_argument_which_the_model_never_sees(db):  # type: ignore[no-untyped-def]
    tool = ToolDefinition(
        name="book_seat",
        description="Book a seat.",
        kind="python",
        python_function="book_seat",
        parameters=get_python_tool("book_seat").parameters,
        idempotent=False,
        honours_idempotency_key=True,
        idempotency_key_argument="request_key",
    )
    tool = tool_save(tool=tool)
    assert set(tool.parameters["properties"]) == {"seat"}  # what the model is offered
    run_id = uuid.uuid4()
    context = ToolContext(run_id=run_id, step=3, call_id="call_7")
    # Whatever the model sends under the key's name, the call's own key is passed.
    first = tool_execute(tool=tool, arguments={"seat": "12A"}, context=context)
    again = tool_execute(tool=tool, arguments={"seat": "12A"}, context=context)
    assert first.content == again.content == f"12A booked under {run_id}:3:call_7"


def test_a_python_tool_declares_its_key_argument_in_code(db):  # type: ignore[no-untyped-def]
    registered = get_python_tool("keyed_side_effect")
    assert registered is not None and registered.idempotency_key_argument == "idempotency_key"
    assert "idempotency_key" not in registered.parameters["properties"]
    tool = next(t for t in python_tools_sync() if t.name == "keyed_side_effect")
    assert tool.honours_idempotency_key and tool.idempotency_key_argument == "idempotency_key"
    assert not tool.idempotent

    def reserve(seat: str) -> str:
        return seat

    with pytest.raises(TypeError, match="takes no argument named 'key'"):
        python_tool(idempotency_key="key")(reserve)
    assert get_python_tool("reserve") is None


def test_an_http_tool_sends_the_same_key_on_every_attempt_and_the_service_keeps_one_change(  # type: ignore[no-untyped-def]
    db, allow_loopback
):
    server = KeyedChargeServer()
    try:
        tool = keyed_charge_tool(server.url)
        context = ToolContext(run_id=uuid.uuid4(), step=2, call_id="call_1")
        first = tool_execute(tool=tool, arguments={"label": "a", "seconds": 0}, context=context)
        again = tool_execute(tool=tool, arguments={"label": "a", "seconds": 0}, context=context)
        other = ToolContext(run_id=context.run_id, step=2, call_id="call_2")
        third = tool_execute(tool=tool, arguments={"label": "a", "seconds": 0}, context=other)
    finally:
        server.stop()
    assert json.loads(first.content) == json.loads(again.content) == {"charge": 1, "label": "a"}
    assert json.loads(third.content)["charge"] == 2
    assert list(server.charges) == [context.idempotency_key, other.idempotency_key]
    assert server.requests[context.idempotency_key] == 2 and server.repeated_keys() == 1
