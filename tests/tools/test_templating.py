"""Templates fill values in without evaluating anything, encoded for where they stand."""

from __future__ import annotations

import json

import pytest

from tools.templating import (
    TemplateError,
    json_path_select,
    render_header,
    render_json,
    render_query,
    render_url_encoded,
)


def test_it_percent_encodes_url_values_so_they_cannot_change_the_request():  # type: ignore[no-untyped-def]
    url = render_url_encoded(
        "https://api.example.com/users/{{id}}/orders?since={{since}}",
        {"id": "../admin?all=1#", "since": "2024-01-01&limit=999"},
    )
    assert url == (
        "https://api.example.com/users/..%2Fadmin%3Fall%3D1%23/orders"
        "?since=2024-01-01%26limit%3D999"
    )
    assert render_url_encoded("https://x/a/{{p}}/b", {"p": ".."}) == "https://x/a/%2E%2E/b"
    assert (
        render_url_encoded("https://x/{{a}}/{{b.c}}", {"a": True, "b": {"c": 7}})
        == "https://x/true/7"
    )
    assert render_url_encoded("https://x/{{missing}}", {}) == "https://x/"


def test_it_json_encodes_values_in_json_bodies():  # type: ignore[no-untyped-def]
    template = (
        '{"name": "{{name}}", "greeting": "Dear {{name}}, hi", "n": {{n}}, "tags": "{{tags}}", '
        '"escaped": "a \\" {{name}}", "none": {{nothing}}}'
    )
    hostile = '", "admin": true, "x": "\\'
    rendered = render_json(template, {"name": hostile, "n": 3, "tags": ["a", "b"]})
    assert json.loads(rendered) == {
        "name": hostile,
        "greeting": f"Dear {hostile}, hi",
        "n": 3,
        "tags": ["a", "b"],
        "escaped": f'a " {hostile}',
        "none": None,
    }
    with pytest.raises(TemplateError, match="valid JSON"):
        render_json('{"a": {{a}}', {"a": 1})
    # Arguments cannot smuggle placeholders in: values are never re-read as templates.
    assert json.loads(render_json('{"a": "{{a}}"}', {"a": "{{b}}", "b": "secret"})) == {
        "a": "{{b}}"
    }


def test_it_refuses_line_breaks_in_headers_and_drops_missing_query_parameters():  # type: ignore[no-untyped-def]
    assert render_header("Bearer {{t}}", {"t": "abc"}) == "Bearer abc"
    for bad in ("a\r\nX-Admin: 1", "a\nb", "a\x00b"):
        with pytest.raises(TemplateError):
            render_header("{{v}}", {"v": bad})
    assert render_query(
        {"q": "{{q}}", "page": "{{page}}", "fixed": "yes", "ids": "{{ids}}"},
        {"q": "a b", "ids": [1, 2]},
    ) == [("q", "a b"), ("fixed", "yes"), ("ids", "1"), ("ids", "2")]


def test_it_selects_by_json_path():  # type: ignore[no-untyped-def]
    doc = {
        "data": {"items": [{"id": 1, "tags": ["x"]}, {"id": 2, "tags": []}]},
        "odd key": {"v": 5},
    }
    assert json_path_select(doc, "$") == doc
    assert json_path_select(doc, "$.data.items[1].id") == 2
    assert json_path_select(doc, "data.items[*].id") == [1, 2]
    assert json_path_select(doc, "$['odd key'].v") == 5
    with pytest.raises(KeyError):
        json_path_select(doc, "$.data.items[5].id")
    with pytest.raises(KeyError):
        json_path_select(doc, "$.nope")
    with pytest.raises(TemplateError):
        json_path_select(doc, "$.data[?(@.id)]")
