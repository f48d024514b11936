"""JSON schemas as this product uses them: a `$ref` resolves inside the schema or not at all.

jsonschema fetches a remote `$ref` (http, file) when it meets one, from whatever process
validates: a schema written by an admin, sent by an MCP server or typed into an experiment
would make the worker read internal URLs or local files. Validators here get an empty
registry, which retrieves nothing, and `schema_refusal` refuses where a schema enters one with
a non-local `$ref`, a `$ref` to nothing, or a recursive one (jsonschema follows references by
recursion: `{"$ref": "#"}` validates for ever, ending in RecursionError).

A schema is read the way a validator reads it, by keyword position (draft 2020-12, with the
older drafts' schema keywords): the value of `properties` is a map of names to subschemas (a
property may be called `const`), the value of `const`, `enum`, `default`, `examples` or an
unknown keyword is data, never looked into, and whatever a local `$ref` points at is a
subschema wherever it sits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jsonschema
import referencing
import referencing.exceptions
import referencing.jsonschema
from jsonschema.protocols import Validator
from referencing.jsonschema import Schema

NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()
REF_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
# Keywords whose value is a subschema, a list of subschemas, a map of names to subschemas.
SUBSCHEMA = frozenset(
    {
        "additionalItems",
        "additionalProperties",
        "contains",
        "contentSchema",
        "else",
        "if",
        "items",  # a list of subschemas before 2020-12
        "not",
        "propertyNames",
        "then",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
SUBSCHEMA_LIST = frozenset({"allOf", "anyOf", "oneOf", "prefixItems", "items"})
SUBSCHEMA_MAP = frozenset(
    {"$defs", "definitions", "dependencies", "dependentSchemas", "patternProperties", "properties"}
)
# Deeper than this a schema is refused before anything recurses over it.
MAX_SCHEMA_DEPTH = 64
Unresolvable = referencing.exceptions.Unresolvable

if TYPE_CHECKING:
    from referencing._core import Resolver


def schema_validator(
    schema: Schema, *, draft: type[Validator] | None = None, **extensions: object
) -> Validator:
    """A validator for `schema` that never retrieves a reference: of `draft` if given, else of
    the schema's own `$schema`; keywords in `extensions` replace the draft's (e.g. a
    time-limited `pattern`)."""
    cls = draft or jsonschema.validators.validator_for(schema)
    if extensions:
        cls = jsonschema.validators.extend(cls, extensions)
    return cls(schema, registry=NO_RETRIEVAL)


@dataclass
class _Refs:
    remote: list[str] = field(default_factory=list)
    dangling: list[str] = field(default_factory=list)
    recursive: list[str] = field(default_factory=list)


def _specification(schema: Schema) -> referencing.Specification[Schema]:
    dialect = schema.get("$schema", "") if isinstance(schema, dict) else ""
    return referencing.jsonschema.specification_with(
        dialect if isinstance(dialect, str) else "", default=referencing.jsonschema.DRAFT202012
    )


def _refs_under(
    node: object, resolver: Resolver[Schema], specification: referencing.Specification[Schema]
) -> list[tuple[dict[str, Any], str, Resolver[Schema]]]:
    """The references in the subschemas of `node` (itself included), not following them:
    (the schema holding one, its keyword, the resolver in effect there)."""
    found = []
    stack = [(node, resolver)]
    while stack:
        schema, resolver = stack.pop()
        if not isinstance(schema, dict):
            continue  # a boolean schema, or not a schema (check_schema says so)
        if isinstance(schema.get("$id"), str):
            resolver = resolver.in_subresource(specification.create_resource(schema))
        for keyword, value in schema.items():
            if keyword in REF_KEYWORDS and isinstance(value, str):
                found.append((schema, keyword, resolver))
            if keyword in SUBSCHEMA and isinstance(value, dict | bool):
                stack.append((value, resolver))
            elif keyword in SUBSCHEMA_LIST and isinstance(value, list):
                stack.extend((item, resolver) for item in value)
            elif keyword in SUBSCHEMA_MAP and isinstance(value, dict):
                stack.extend((item, resolver) for item in value.values())
    return found


def _depth(value: object) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_SCHEMA_DEPTH:
                items = node.values() if isinstance(node, dict) else node
                stack.extend((item, depth + 1) for item in items)
    return deepest


def _refs(schema: Schema) -> _Refs:
    """Every reference a validator of `schema` could follow, by where it points."""
    refs = _Refs()
    specification = _specification(schema)
    root = NO_RETRIEVAL.resolver_with_root(specification.create_resource(schema))
    # A reference is (id of the schema holding it, keyword); edges go to the references a
    # validator meets next after following it, without consuming any of the instance.
    edges: dict[tuple[int, str], list[tuple[int, str]]] = {}
    names: dict[tuple[int, str], str] = {}
    todo = _refs_under(schema, root, specification)
    walked: dict[int, list[tuple[int, str]]] = {}  # by target: many references share one
    while todo:
        holder, keyword, resolver = todo.pop()
        key = (id(holder), keyword)
        if key in edges:
            continue
        ref = names[key] = holder[keyword]
        edges[key] = []
        if not ref.startswith("#"):
            refs.remote.append(ref)
            continue
        try:
            target = resolver.lookup(ref)
        except (Unresolvable, LookupError, AttributeError, TypeError, ValueError):
            refs.dangling.append(ref)  # a malformed pointer is as good as one to nothing
            continue
        if id(target.contents) not in walked:
            following = _refs_under(target.contents, target.resolver, specification)
            walked[id(target.contents)] = [(id(h), k) for h, k, _ in following]
            todo.extend(following)
        edges[key] = walked[id(target.contents)]
    refs.recursive = [names[key] for key in _in_cycles(edges)]
    return refs


def _in_cycles(edges: dict[tuple[int, str], list[tuple[int, str]]]) -> list[tuple[int, str]]:
    """The references from which following references leads back to one on the way."""
    state: dict[tuple[int, str], int] = {}  # 1 on the current path, 2 done
    cyclic = []
    for start in edges:
        if start in state:
            continue
        state[start] = 1
        path = [(start, iter(edges[start]))]
        while path:
            node, following = path[-1]
            step = next(following, None)
            if step is None:
                state[node] = 2
                path.pop()
            elif state.get(step) == 1:
                cyclic.append(step)
            elif step not in state:
                state[step] = 1
                path.append((step, iter(edges.get(step, []))))
    return cyclic


def remote_refs(schema: Schema) -> list[str]:
    """The references in `schema` that point outside it (anything but `#…`)."""
    return _refs(schema).remote


def schema_refusal(schema: Schema) -> str | None:
    """Why `schema` cannot be used here (one sentence), or None: nested deeper than
    MAX_SCHEMA_DEPTH, a `$ref` outside the schema, to nothing in it, or recursive."""
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        return f"The schema is nested more than {MAX_SCHEMA_DEPTH} levels deep."
    try:
        refs = _refs(schema)
    except ValueError as exc:  # an `$id` that is no URI
        return f"An $id of the schema is not a valid URI ({exc})."
    if refs.remote:
        return (
            f"A $ref must point inside the schema (#/…), not to {refs.remote[0]!r}: "
            "nothing is fetched to validate."
        )
    if refs.dangling:
        return f"The $ref {refs.dangling[0]!r} points to nothing in the schema."
    if refs.recursive:
        return (
            f"The $ref {refs.recursive[0]!r} leads back to itself: recursive schemas are "
            "not accepted (write out the levels the data may have)."
        )
    return None
