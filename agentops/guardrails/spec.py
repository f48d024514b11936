"""What a guardrail is, as an agent version keeps it: a list of plain dicts, checked in order.

    {"name": "no-cards", "stage": "input", "kind": "pii", "action": "redact",
     "entities": ["card", "iban"]}

Stages: `input` (the end user's message, before the model), `output` (the model's answer,
before anyone sees it), `tool_arguments` (a call's arguments, before it runs) and
`tool_result` (a tool's result, before the model reads it). `guardrails_validate` is the one
place that says which kinds and actions each stage takes; it cleans what the builder and the
API send, and its errors name the guardrail and its field.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import phonenumbers
import regex
from django.core.exceptions import ValidationError

from tools.schemas import schema_refusal

STAGES = ("input", "output", "tool_arguments", "tool_result")
KINDS = ("terms", "regex", "pii", "classifier", "json_schema")
ACTIONS = ("block", "redact", "handoff", "flag", "approval")
MODES = ("blocking", "parallel")
PII_ENTITIES = ("card", "iban", "email", "phone", "national_id")

KINDS_BY_STAGE = {
    "input": ("terms", "regex", "pii", "classifier"),
    "output": ("terms", "regex", "pii", "classifier", "json_schema"),
    "tool_arguments": ("terms", "regex", "pii", "json_schema"),
    "tool_result": ("terms", "regex", "pii"),
}
ACTIONS_BY_STAGE = {
    "input": ("block", "redact", "handoff", "flag"),
    "output": ("block", "redact", "handoff", "flag"),
    "tool_arguments": ("block", "redact", "approval", "flag"),
    "tool_result": ("block", "redact", "flag"),
}
# Kinds that find spans of text (and so can redact them); the others give a verdict only.
FINDERS = ("terms", "regex", "pii")

DEFAULT_MESSAGE = "Sorry, I can't help with that request."
MAX_GUARDRAILS = 20
MAX_ITEMS = 200
MAX_TEXT = 4000


def guardrail_describe(guardrail: dict[str, Any]) -> str:
    """One line for a diff or a list: its name, where it checks, what and what it does."""
    return (
        f"{guardrail.get('name', '?')} ({guardrail.get('stage', '?')}, "
        f"{guardrail.get('kind', '?')} → {guardrail.get('action', '?')})"
    )


def _strings(value: object, field: str, *, required: bool) -> list[str]:
    if value is None and not required:
        return []
    if (
        not isinstance(value, list)
        or not all(isinstance(v, str) and v.strip() for v in value)
        or len(value) > MAX_ITEMS
    ):
        raise _Problem(field, f"give a list of up to {MAX_ITEMS} non-empty texts")
    if required and not value:
        raise _Problem(field, "give at least one")
    return [v.strip() if field == "terms" else v for v in value]


class _Problem(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _choice(guardrail: dict[str, Any], field: str, allowed: tuple[str, ...], default: str) -> str:
    value = guardrail.get(field, default)
    if value not in allowed:
        raise _Problem(field, f"use one of {', '.join(allowed)}")
    return str(value)


def _schema(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Problem("schema", "give a JSON schema (an object)")
    if refusal := schema_refusal(value):  # first: it bounds the depth check_schema recurses
        raise _Problem("schema", refusal)
    if _keys_in(value) & {"pattern", "patternProperties"}:
        # jsonschema matches these with `re`, out of reach of a time limit: a regex guardrail
        # checks text with one.
        raise _Problem(
            "schema", "pattern and patternProperties are not allowed here: use a regex guardrail"
        )
    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        raise _Problem("schema", f"not a valid JSON schema: {exc.message}") from None
    return value


def _keys_in(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys_in(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys_in(v)}
    return set()


def _one(guardrail: object, endpoints: set[int]) -> dict[str, Any]:
    """One guardrail, cleaned: only the fields its kind uses, defaults filled in."""
    if not isinstance(guardrail, dict):
        raise _Problem("", "give an object")
    name = guardrail.get("name")
    if not isinstance(name, str) or not regex.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
        raise _Problem("name", "give a name: lowercase letters, digits, - and _ (up to 64)")
    stage = _choice(guardrail, "stage", STAGES, "")
    kind = _choice(guardrail, "kind", KINDS_BY_STAGE[stage], "")
    action = _choice(guardrail, "action", ACTIONS_BY_STAGE[stage], "")
    if action == "redact" and kind not in FINDERS:
        raise _Problem("action", f"a {kind} guardrail gives a verdict and cannot redact")
    clean: dict[str, Any] = {"name": name, "stage": stage, "kind": kind, "action": action}
    message = guardrail.get("message", DEFAULT_MESSAGE)
    if not isinstance(message, str) or not message.strip() or len(message) > MAX_TEXT:
        raise _Problem("message", f"give the text shown when it blocks (up to {MAX_TEXT})")
    clean["message"] = message.strip()
    if kind == "terms":
        clean["terms"] = _strings(guardrail.get("terms"), "terms", required=True)
    elif kind == "regex":
        patterns = _strings(guardrail.get("patterns"), "patterns", required=True)
        for pattern in patterns:
            try:
                regex.compile(pattern)
            except regex.error as exc:
                raise _Problem("patterns", f"{pattern!r} is not a valid pattern: {exc}") from None
        clean["patterns"] = patterns
    elif kind == "pii":
        entities = guardrail.get("entities", list(PII_ENTITIES))
        if (
            not isinstance(entities, list)
            or not entities
            or any(e not in PII_ENTITIES for e in entities)
        ):
            raise _Problem("entities", f"give a list of: {', '.join(PII_ENTITIES)}")
        clean["entities"] = [e for e in PII_ENTITIES if e in entities]
        region = guardrail.get("region", "US")
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise _Problem("region", "give a region code such as US, GB or DE (for phone numbers)")
        clean["region"] = region
    elif kind == "classifier":
        rubric = guardrail.get("rubric")
        if not isinstance(rubric, str) or not rubric.strip() or len(rubric) > MAX_TEXT:
            raise _Problem("rubric", "say what the classifier must catch (up to 4000 characters)")
        clean["rubric"] = rubric.strip()
        endpoint = guardrail.get("endpoint")
        if endpoint is not None and endpoint not in endpoints:
            raise _Problem("endpoint", f"no model endpoint with id {endpoint!r}")
        clean["endpoint"] = endpoint
        model = guardrail.get("model", "")
        if not isinstance(model, str) or len(model) > 200:
            raise _Problem("model", "give a model name, or leave it empty")
        clean["model"] = model
        mode = _choice(guardrail, "mode", MODES, "blocking")
        if mode == "parallel" and stage != "input":
            raise _Problem("mode", "only input classifiers run beside the agent's model call")
        clean["mode"] = mode
    elif kind == "json_schema":
        clean["schema"] = _schema(guardrail.get("schema"))
    if stage in ("tool_arguments", "tool_result"):
        clean["tools"] = _strings(guardrail.get("tools"), "tools", required=False)
    return clean


def guardrails_validate(*, value: object, endpoints: set[int]) -> list[dict[str, Any]]:
    """The guardrails as the runtime reads them, or a ValidationError on the `guardrails`
    field naming each wrong one by position and name, and its field."""
    if not isinstance(value, list):
        raise ValidationError({"guardrails": ["Give a list of guardrails."]})
    if len(value) > MAX_GUARDRAILS:
        raise ValidationError({"guardrails": [f"At most {MAX_GUARDRAILS} guardrails."]})
    cleaned, problems, names = [], [], set()
    for number, guardrail in enumerate(value, start=1):
        label = f"#{number}"
        if isinstance(guardrail, dict) and isinstance(guardrail.get("name"), str):
            label += f" ({guardrail['name'][:64]})"
        try:
            one = _one(guardrail, endpoints)
        except _Problem as problem:
            where = f"{label} {problem.field}" if problem.field else label
            problems.append(f"{where}: {problem.message}.")
            continue
        if one["name"] in names:
            problems.append(f"{label} name: another guardrail has this name.")
        names.add(one["name"])
        cleaned.append(one)
    if problems:
        raise ValidationError({"guardrails": problems})
    return cleaned
