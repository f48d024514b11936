"""The `$ref` entry check reads a schema by keyword position, and refuses recursive ones."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from agentops.experiments.models import Check, CheckKind
from agentops.experiments.scoring import check_score, check_validate
from tools.models import validate_json_schema
from tools.schemas import remote_refs, schema_refusal

REMOTE = "http://169.254.169.254/latest/meta-data/"


@pytest.mark.parametrize("name", ["const", "enum", "default", "examples"])
def test_a_property_named_like_a_value_keyword_is_a_schema(name):
    hidden = {"type": "object", "properties": {name: {"$ref": REMOTE}}}
    assert remote_refs(hidden) == [REMOTE]
    nested = {"type": "object", "properties": {name: {"items": {"$ref": REMOTE}}}}
    assert remote_refs(nested) == [REMOTE]
    with pytest.raises(ValidationError, match="must point inside the schema"):
        validate_json_schema(hidden)
    with pytest.raises(ValidationError, match="must point inside the schema"):
        check_validate(kind=CheckKind.JSON_SCHEMA, expected="", schema=nested, endpoint=None)


def test_what_a_local_ref_points_at_is_a_schema_even_inside_a_value():
    via_const = {"$ref": "#/properties/a/const", "properties": {"a": {"const": {"$ref": REMOTE}}}}
    via_unknown = {"$ref": "#/x-stash", "x-stash": {"$ref": REMOTE}}
    assert remote_refs(via_const) == [REMOTE] and remote_refs(via_unknown) == [REMOTE]
    # A value is data: nothing in it is followed unless a reference points into it.
    data = {"properties": {"a": {"const": {"$ref": REMOTE}, "default": {"$ref": REMOTE}}}}
    assert remote_refs(data) == [] and schema_refusal(data) is None


RECURSIVE = [
    {"$ref": "#"},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"type": "object", "properties": {"children": {"items": {"$ref": "#"}}}},
    {"$defs": {"node": {"anyOf": [{"$ref": "#node"}], "$anchor": "node"}}, "$ref": "#node"},
    {"$dynamicAnchor": "meta", "items": {"$dynamicRef": "#meta"}},
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"a": {"items": [{"$ref": "#/definitions/a"}]}},
        "$ref": "#/definitions/a",
    },
]


@pytest.mark.parametrize("schema", RECURSIVE)
def test_recursive_schemas_are_refused_at_entry(schema):
    assert "recursive schemas are not accepted" in (schema_refusal(schema) or "")
    with pytest.raises(ValidationError, match="recursive schemas are not accepted"):
        check_validate(kind=CheckKind.JSON_SCHEMA, expected="", schema=schema, endpoint=None)


@pytest.mark.parametrize("schema", RECURSIVE[:2])
def test_a_recursive_schema_stored_before_scores_an_error(schema):
    check = Check(kind=CheckKind.JSON_SCHEMA, schema=schema)
    result = check_score(check=check, output='{"a": [[]]}', item_input="", reference="")
    assert result.score is None and "recurse" in result.error


def test_shared_definitions_dangling_refs_and_deep_schemas():
    shared = {
        "$defs": {"id": {"type": "string"}},
        "properties": {"a": {"$ref": "#/$defs/id"}, "b": {"$ref": "#/$defs/id"}},
    }
    assert schema_refusal(shared) is None
    assert "points to nothing" in (schema_refusal({"$ref": "#/$defs/none"}) or "")
    assert "points to nothing" in (schema_refusal({"$ref": "#/items/-1", "items": [1]}) or "")
    assert "not a valid URI" in (schema_refusal({"$id": "http://[x", "$ref": "#"}) or "")
    deep: dict = {}
    node = deep
    for _ in range(1000):
        node["items"] = {}
        node = node["items"]
    with pytest.raises(ValidationError, match="nested more than 64 levels"):
        validate_json_schema({"type": "object", "properties": {"a": deep}})
