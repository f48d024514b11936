"""JSON from outside (request bodies, uploaded lines, form fields), parsed once for every door.

`json.loads` accepts what the product cannot keep or walk: `"\\u0000"` (Postgres stores no
NUL, in text or jsonb), a lone surrogate such as `"\\ud800"` (not Unicode: encoding it for
Postgres fails), and nesting so deep that the parser, pydantic or any later recursive walk
raises RecursionError. `json_parse` refuses all three with a `JsonInputError` naming the field
(its dotted path, e.g. `items.0.input`); it is a ValueError, like the JSONDecodeError of text
that is not JSON at all, so a caller that already answers bad JSON answers these too."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

# Real documents here (settings, dataset items, tool schemas) stay far below this; JSON
# libraries elsewhere draw the line near it (serde_json 128, jiter 200).
MAX_DEPTH = 64
_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class JsonInputError(ValueError):
    def __init__(self, message: str, *, field: str | None) -> None:
        self.message, self.field = message, field
        super().__init__(f"{field}: {message}" if field else message)


def text_problem(text: str, *, nul_ok: bool = False) -> str | None:
    """What makes `text` unstorable (a NUL, unless `nul_ok`; a lone surrogate), or None."""
    found = (_SURROGATE if nul_ok else _BAD_CHARACTER).search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "must not contain NUL characters"
    return f"holds a lone surrogate (U+{ord(found.group()):04X}): not valid Unicode text"


def json_parse(text: str | bytes, *, nul_ok: bool = False) -> Any:
    """`json.loads(text)`, refusing NUL (unless `nul_ok`), lone surrogates, NaN and Infinity,
    and nesting deeper than MAX_DEPTH (JsonInputError); text that is no JSON raises json.JSONDecodeError (or
    UnicodeDecodeError for bytes that are no UTF-8), as json.loads does."""
    try:
        value = json.loads(text)
    except RecursionError:
        field = _deep_field(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)
        raise JsonInputError(f"nested more than {MAX_DEPTH} levels deep", field=field) from None
    json_check(value, nul_ok=nul_ok)
    return value


def json_check(value: object, *, nul_ok: bool = False) -> None:
    """json_parse's refusals for a value parsed already (by pydantic, say)."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if problem := text_problem(node, nul_ok=nul_ok):
                raise JsonInputError(problem, field=_dotted(path))
            continue
        if isinstance(node, float) and not math.isfinite(node):
            # json.loads takes NaN and Infinity; JSON has no such numbers, nor has Postgres.
            raise JsonInputError(f"{node} is not a JSON number", field=_dotted(path) or None)
        if not isinstance(node, dict | list):
            continue
        if len(path) >= MAX_DEPTH:
            # Named by its top-level field: the full path would be MAX_DEPTH parts long.
            raise JsonInputError(
                f"nested more than {MAX_DEPTH} levels deep", field=_dotted(path[:1])
            )
        if isinstance(node, dict):
            for key, item in node.items():
                if problem := text_problem(key, nul_ok=nul_ok):
                    raise JsonInputError(f"a key {problem}", field=_dotted(path) or None)
                stack.append((item, (*path, key)))
        else:
            stack.extend((item, (*path, index)) for index, item in enumerate(node))


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"\s*:?|[\[\]{}]')


def _deep_field(text: str) -> str | None:
    """The top-level key under which `text` (too deep for json.loads) nests too deep."""
    depth, key = 0, None
    for token in _TOKENS.finditer(text):
        found = token.group()
        if found in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return key
        elif found in "]}":
            depth -= 1
        elif depth == 1 and found.endswith(":"):
            key = found[:-1].rstrip()[1:-1]
    return key


def _dotted(path: tuple[Any, ...]) -> str | None:
    return ".".join(str(part) for part in path) or None


class JsonFormField(forms.JSONField):
    """Django's form JSONField (the admin's, for every model JSONField: tracing/apps.py) with
    json_parse's refusals as a form error; Django's own would pass a lone surrogate on to
    Postgres and raise RecursionError, parsing and re-rendering, on deep nesting."""

    def to_python(self, value: object) -> Any:
        if isinstance(value, str) and not self.disabled:
            try:
                json_parse(value)
            except JsonInputError as exc:
                raise ValidationError(str(exc), code="invalid") from None
            except ValueError:
                pass  # not JSON: Django's own message
        return super().to_python(value)

    def bound_data(self, data: object, initial: object) -> object:
        if isinstance(data, str) and not self.disabled:
            try:
                json_parse(data)
            except JsonInputError:  # shown again as typed, not as the value it parses to
                return forms.fields.InvalidJSONInput(data)
            except ValueError:
                pass
        return super().bound_data(data, initial)
