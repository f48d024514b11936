"""Templates for HTTP tools: `{{name}}` placeholders filled from the call's arguments.

Nothing in a template is evaluated: a placeholder names an argument (or a dotted path
into one) and is replaced by its value, encoded for where it stands: percent-encoded in
URLs and form bodies, JSON-encoded in JSON bodies, refused in headers if it would break
the header line. A JSON path picks a part of a JSON response ($.a.b[0], $.items[*].id).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\s*\}\}")
_MISSING = object()


class TemplateError(ValueError):
    """A template cannot be rendered with these arguments (or is malformed)."""


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER_RE.findall(template or "")


def _lookup(arguments: dict[str, Any], path: str) -> object:
    value: object = arguments
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _plain(value: object) -> str:
    if value is _MISSING or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render_text(template: str, arguments: dict[str, Any]) -> str:
    return PLACEHOLDER_RE.sub(lambda m: _plain(_lookup(arguments, m.group(1))), template)


def render_url_encoded(template: str, arguments: dict[str, Any]) -> str:
    """For URLs and form bodies: every value is percent-encoded, so it cannot add a path
    segment, a query parameter or change the host."""

    def encode(match: re.Match[str]) -> str:
        value = quote(_plain(_lookup(arguments, match.group(1))), safe="")
        # "." and ".." would move up the path once the URL is normalised.
        return value.replace(".", "%2E") if value and set(value) == {"."} else value

    return PLACEHOLDER_RE.sub(encode, template)


def render_header(template: str, arguments: dict[str, Any]) -> str:
    value = render_text(template, arguments)
    if any(c in value for c in "\r\n\x00"):
        raise TemplateError("A header value may not contain line breaks.")
    return value


def render_query(mapping: dict[str, str], arguments: dict[str, Any]) -> list[tuple[str, str]]:
    """Query parameters; one that is only a placeholder for a missing argument is left out."""
    params: list[tuple[str, str]] = []
    for key, template in mapping.items():
        template = str(template)
        whole = PLACEHOLDER_RE.fullmatch(template.strip())
        if whole:
            value = _lookup(arguments, whole.group(1))
            if value is _MISSING or value is None:
                continue
            if isinstance(value, list):
                params.extend((key, _plain(item)) for item in value)
                continue
        params.append((key, render_text(template, arguments)))
    return params


def render_json(template: str, arguments: dict[str, Any]) -> str:
    """Fill a JSON body template. A placeholder standing alone (`{{n}}` or `"{{n}}"`) becomes
    the argument's JSON value; one inside a longer string becomes escaped string text.
    The result must be valid JSON."""
    out: list[str] = []
    i, n = 0, len(template)
    in_string = False
    while i < n:
        c = template[i]
        match = PLACEHOLDER_RE.match(template, i) if c == "{" else None
        if match:
            value = _lookup(arguments, match.group(1))
            json_value = "null" if value is _MISSING else json.dumps(value, ensure_ascii=False)
            end = match.end()
            if in_string:
                # out[-1] is a lone '"' only when it is this string's opening quote.
                if out and out[-1] == '"' and end < n and template[end] == '"':
                    out[-1] = json_value
                    in_string = False
                    i = end + 1
                    continue
                text = _plain(value)
                out.append(json.dumps(text, ensure_ascii=False)[1:-1])
            else:
                out.append(json_value)
            i = end
            continue
        if in_string and c == "\\" and i + 1 < n:
            out.append(template[i : i + 2])
            i += 2
            continue
        if c == '"':
            in_string = not in_string
        out.append(c)
        i += 1
    rendered = "".join(out)
    try:
        json.loads(rendered)
    except json.JSONDecodeError as exc:
        raise TemplateError(f"The JSON body template does not give valid JSON: {exc}") from exc
    return rendered


# -- JSON path ---------------------------------------------------------------------------

_PATH_TOKEN_RE = re.compile(
    r"""\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+|\*)\]|\[(?:'([^']*)'|"([^"]*)")\]|\.\*"""
)


def parse_json_path(path: str) -> list[str | int]:
    """Parse `$.a.b[0]['c d'][*]` into tokens ("*" is a wildcard). Raises TemplateError."""
    path = path.strip()
    if not path.startswith("$"):
        path = "$." + path if path else "$"
    tokens: list[str | int] = []
    pos = 1
    while pos < len(path):
        match = _PATH_TOKEN_RE.match(path, pos)
        if not match:
            raise TemplateError(f"Cannot read the JSON path {path!r} at position {pos}.")
        name, index, single, double = match.groups()
        if name is not None:
            tokens.append(name)
        elif index is not None:
            tokens.append("*" if index == "*" else int(index))
        elif single is not None or double is not None:
            tokens.append(single if single is not None else double)
        else:
            tokens.append("*")
        pos = match.end()
    return tokens


def json_path_select(document: Any, path: str) -> Any:
    """The value at `path`; a list when the path has a wildcard. Raises KeyError if absent."""
    values = [document]
    multi = False
    for token in parse_json_path(path):
        found: list[Any] = []
        for value in values:
            if token == "*":  # noqa: S105
                multi = True
                if isinstance(value, list):
                    found.extend(value)
                elif isinstance(value, dict):
                    found.extend(value.values())
            elif isinstance(token, int):
                if isinstance(value, list) and token < len(value):
                    found.append(value[token])
            elif isinstance(value, dict) and token in value:
                found.append(value[token])
        if not found and not multi:
            raise KeyError(path)
        values = found
    return values if multi else values[0]
