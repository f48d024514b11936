"""JSON schemas as this product uses them: a `$ref` resolves inside the schema or not at all.

jsonschema fetches a remote `$ref` (http, file) when it meets one, from whatever process
validates: a schema written by an admin, sent by an MCP server or typed into an experiment
would make the worker read internal URLs or local files. Validators here get an empty
registry, which retrieves nothing, and schemas with a non-local `$ref` are refused where they
enter."""

from __future__ import annotations

from typing import Any

import jsonschema
import referencing
import referencing.exceptions

NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()
REF_KEYWORDS = ("$ref", "$dynamicRef")
DATA_KEYWORDS = ("const", "enum", "default", "examples")  # values, not schemas
Unresolvable = referencing.exceptions.Unresolvable


def schema_validator(schema: Any, *, draft: Any = None, **extensions: Any) -> Any:
    """A validator for `schema` that never retrieves a reference: of `draft` if given, else of
    the schema's own `$schema`; keywords in `extensions` replace the draft's (e.g. a
    time-limited `pattern`)."""
    cls = draft or jsonschema.validators.validator_for(schema)
    if extensions:
        cls = jsonschema.validators.extend(cls, extensions)
    return cls(schema, registry=NO_RETRIEVAL)


def remote_refs(schema: Any) -> list[str]:
    """The references in `schema` that point outside it (anything but `#…`)."""
    found: list[str] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in REF_KEYWORDS and isinstance(value, str) and not value.startswith("#"):
                    found.append(value)
                elif key not in DATA_KEYWORDS:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found
