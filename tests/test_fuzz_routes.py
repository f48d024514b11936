"""Malformed input at every door, against the real ASGI server: no shape of bad input may
answer 5xx. Every route of the URLconf plus `/v1/`, `/mcp/` and the event streams, as an
admin and anonymously: a NUL in the path and in the query string, JSON with a lone surrogate,
JSON nested 1,000 deep, huge strings, and forms with NUL and overlong fields."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from agentops.auth import api_key_create
from agentops.experiments.models import Dataset
from agentops.models import ModelEndpoint
from agentops.widget.services import widget_key_create
from tests.agentops.operators.helpers import make_handoff
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

CSRF = "f" * 32
DEEP = "[" * 1000 + "]" * 1000
JSON_TEXT = ('{"a": "\\ud800"}', DEEP)  # for a textarea, which may take JSON
FORM_FIELDS = ("content", "name", "username", "password", "colour", "model", "title", "note")
SKIP = re.compile(r"^/static/|^/logout/|/delete/?$|/export|/password/")


def _patterns(resolver: Any = None, prefix: str = "") -> list[str]:
    out: list[str] = []
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            out += _patterns(entry, route)
        elif isinstance(entry, URLPattern):
            out.append(route)
    return out


def _paths(ids: dict[str, int]) -> list[str]:
    paths = set()
    for route in _patterns():
        if route.startswith("^") or "(?P" in route:  # admin's regex routes: one example each
            route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: str(ids.get(m.group(1), 1)), route)
            route = re.sub(r"[\^$\\]|\(\?:|\)\??|\?", "", route)
        filled = re.sub(
            r"<(?:(\w+):)?(\w+)>",
            lambda m: str(ids.get(m.group(2), 1)) if m.group(1) in ("int", None) else "x",
            route,
        )
        path = "/" + filled.lstrip("/")
        if not SKIP.search(path):
            paths.add(path)
    paths |= {
        "/v1/models",
        "/v1/models/x",
        "/v1/chat/completions",
        "/mcp/",
        "/api/sessions/00000000-0000-0000-0000-000000000000/events",
    }
    return sorted(paths)


def _shapes(path: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, url path, httpx keyword arguments) of every bad input sent to `path` (to the
    Django admin's generic pages, the bad URLs only: its forms are sent by _form_shapes)."""
    nul_path = path.rstrip("/") + "%00" + ("/" if path.endswith("/") else "")
    nul_query: dict[str, Any] = {"params": {"key": "\x00", "after": "\x00", "q": "\x00"}}
    if path.startswith("/admin/"):
        return [("GET", nul_path, {}), ("GET", path, nul_query)]
    json_headers = {"content-type": "application/json"}
    surrogate = '{"content": "\\ud800", "input": "\\ud800", "name": "\\ud800", "key": "\\ud800"}'
    huge = {name: "x" * 20_000 for name in ("content", "input", "name", "model", "message")}
    form_nul = {name: "a\x00b" for name in FORM_FIELDS}
    form_long = {name: "y" * 400 for name in FORM_FIELDS}
    return [
        ("GET", nul_path, {}),
        ("GET", path, nul_query),
        ("POST", path, {"content": surrogate, "headers": json_headers}),
        ("POST", path, {"content": DEEP, "headers": json_headers}),
        ("POST", path, {"content": json.dumps(huge), "headers": json_headers}),
        ("PATCH", path, {"content": surrogate, "headers": json_headers}),
        ("POST", path, {"data": form_nul}),
        ("POST", path, {"data": form_long}),
    ]


class _Forms(HTMLParser):
    """The POST forms of a page: (action, {field: value}, the fields a person types into)."""

    TYPED = ("text", "search", "email", "url", "password", "tel", "number", "")

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str], list[str]]] = []
        self.current: tuple[str, dict[str, str], list[str]] | None = None
        self.select: str | None = None
        self.textareas: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("method", "get").lower() == "post":
            self.current = (a.get("action", ""), {}, [])
            self.forms.append(self.current)
        if self.current is None or not a.get("name"):
            return
        _, values, typed = self.current
        name = a["name"]
        if tag == "input" and a.get("type", "") not in ("submit", "button", "file", "reset"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            values.setdefault(name, a.get("value", ""))
            if a.get("type", "") in self.TYPED or a.get("type") == "hidden":
                typed.append(name)
        elif tag == "textarea":
            values[name] = ""
            typed.append(name)
            self.textareas.add(name)
        elif tag == "select":
            self.select = name
        if tag == "option" and self.select and (self.select not in values or "selected" in a):
            values[self.select] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.current = None
        elif tag == "select":
            self.select = None


def _form_shapes(client: httpx.Client, path: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Every POST form on the page at `path`, once per typed field with a NUL in it and once
    with a huge value, the other fields as the page fills them."""
    with client.stream("GET", path) as page:  # an event stream is never read to its end
        if page.status_code != 200 or "text/html" not in page.headers.get("content-type", ""):
            return []
        page.read()
    parser = _Forms()
    parser.feed(page.text)
    textareas = parser.textareas
    shapes = []
    for action, values, typed in parser.forms:
        target = urljoin(str(page.url), action or path)
        if SKIP.search(urlsplit(target).path):
            continue
        for name in typed:
            if name == "csrfmiddlewaretoken":
                continue
            for bad in ("a\x00b", "z" * 5000) + (JSON_TEXT if name in textareas else ()):
                shapes.append(("POST", target, {"data": {**values, name: bad}}))
    return shapes


def _fuzz(base: str, headers: dict[str, str], cookies: dict[str, str], paths: list[str]) -> list:
    def send(shape: tuple[str, str, dict[str, Any]]) -> tuple | None:
        method, url, kwargs = shape
        try:
            with client.stream(method, url, **kwargs) as response:  # the status only
                status = response.status_code
        except httpx.TimeoutException:
            return (method, url, str(kwargs)[:120], "no answer in 60 s")
        return (method, url, str(kwargs)[:120], status) if status >= 500 else None

    with (
        httpx.Client(base_url=base, headers=headers, cookies=cookies, timeout=60) as client,
        ThreadPoolExecutor(4) as pool,
    ):
        shapes = [shape for path in paths for shape in _shapes(path)]
        pages = [path for path in paths if _has_forms(path)]
        for forms in pool.map(lambda path: _form_shapes(client, path), pages):
            shapes += forms
        return [failure for failure in pool.map(send, shapes) if failure]


def _has_forms(path: str) -> bool:
    # The Django admin: its add pages stand for its change pages (the same forms).
    return not path.startswith("/admin/") or path.endswith("/add/")


@pytest.fixture
def objects(alice) -> dict[str, int]:  # type: ignore[no-untyped-def]
    handoff = make_handoff()
    dataset = Dataset.objects.create(name="fuzz")
    item = dataset.items.create(input="hi", reference="hello", source="api")
    key, _ = widget_key_create(
        agent=handoff.session.agent, name="fuzz", allowed_origins=[], actor=alice
    )
    endpoint = ModelEndpoint.objects.get(pk=handoff.session.agent.endpoint_id)
    return {
        "handoff_id": handoff.pk,
        "dataset_id": dataset.pk,
        "item_id": item.pk,
        "key_id": key.pk,
        "pk": endpoint.pk,
        "agent_id": handoff.session.agent_id,
        "object_id": endpoint.pk,
        "user_id": alice.pk,
    }


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_no_malformed_input_gets_a_server_error(web, alice, objects, client):  # type: ignore[no-untyped-def]
    alice.is_staff = alice.is_superuser = True
    alice.save()
    UserFactory(username="bystander", role="operator")
    raw_key = api_key_create(user=alice, name="fuzz")[1]
    paths = _paths(objects)
    client.force_login(alice)
    admin = {"sessionid": client.cookies["sessionid"].value, "csrftoken": CSRF}
    origin = f"http://{web}"
    admin_headers = {
        "X-CSRFToken": CSRF,
        "Origin": origin,
        "Referer": origin + "/",
        "Authorization": f"Bearer {raw_key}",
    }
    failures = _fuzz(origin, admin_headers, admin, paths)
    failures += _fuzz(origin, {"Origin": origin}, {}, paths)
    assert not failures, "\n".join(map(str, failures))
