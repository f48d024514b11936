"""Scoring one answer by one check. Deterministic checks score 1 or 0; a judge is a model
call whose reply is untrusted: it must be a JSON verdict of the documented shape, or the
check records an error (and no score) instead of guessing."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

import jsonschema
import regex
from django.core.exceptions import ValidationError
from jsonschema.protocols import Validator

from agentops.experiments.models import Check, CheckKind
from agentops.models import ModelEndpoint
from agentops.runtime.model_client import model_call_guarded
from agentops.runtime.retry import MODEL_RETRY
from tools.schemas import Unresolvable, schema_refusal, schema_validator
from tracing.emit import Tracer
from tracing.platform.failures import Failure
from tracing.platform.json_input import json_parse

JUDGE_PREAMBLE = (
    "You are a judge. You grade an AI agent's answer to a user's message against a reference "
    "answer and the rubric below.\n\nRubric:\n"
)
JUDGE_FORMAT = (
    '\n\nReply with one JSON object and nothing else: {"pass": true or false, "score": a '
    'number from 0 to 1, "reason": "one sentence"}.'
)
DEFAULT_RUBRIC = "The answer gives the same information as the reference answer."
MAX_JUDGE_TEXT = 8000
# A pattern is the user's and an answer the model's: a pattern that backtracks for ever on
# one answer scores an error, and, with the GIL released, the worker's other runs go on.
REGEX_TIMEOUT = 1.0

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "pass": {"type": "boolean"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
    "required": ["pass", "score"],
}


@dataclass
class CheckScore:
    score: float | None
    detail: str = ""
    error: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"score": self.score, "detail": self.detail[:500], "error": self.error[:1000]}


def check_validate(
    *, kind: str, expected: str, schema: Any, endpoint: ModelEndpoint | None
) -> None:
    """Refuse a check that could never score, naming the field."""
    if kind not in CheckKind.values:
        raise ValidationError({"kind": [f"Use one of {', '.join(CheckKind.values)}."]})
    if kind == CheckKind.REGEX:
        if not expected:
            raise ValidationError({"expected": ["A regex check needs a pattern."]})
        try:
            regex.compile(expected)
        except regex.error as exc:
            raise ValidationError(
                {"expected": [f"Not a valid regular expression: {exc}."]}
            ) from None
    if kind == CheckKind.JSON_SCHEMA:
        if not isinstance(schema, dict):
            raise ValidationError({"schema": ["A JSON-schema check needs a schema object."]})
        if refusal := schema_refusal(schema):  # first: it bounds the depth check_schema recurses
            raise ValidationError({"schema": [refusal]})
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise ValidationError(
                {"schema": [f"Not a valid JSON schema: {exc.message}."]}
            ) from None
        keys = _keys_in(schema)
        if "patternProperties" in keys and keys.intersection(UNLIMITED_WITH_PATTERNS):
            raise ValidationError(
                {"schema": ["unevaluatedProperties cannot be used with patternProperties here."]}
            )
    if kind == CheckKind.JUDGE and endpoint is None:
        raise ValidationError({"endpoint": ["A judge needs a model endpoint to run it."]})


RUNAWAY_PATTERN = (
    f"a pattern ran over {REGEX_TIMEOUT:g} s on this answer (it backtracks too much: simplify "
    "nested repeats such as (a|aa)+)"
)


def _search(pattern: str, text: str) -> bool:
    """re.search's answer, under REGEX_TIMEOUT (TimeoutError past it)."""
    return regex.search(pattern, text, timeout=REGEX_TIMEOUT, concurrent=True) is not None


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    if validator.is_type(instance, "string") and not _search(pattern, instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(validator: Any, patterns: dict, instance: Any, schema: Any) -> Any:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(validator: Any, allowed: Any, instance: Any, schema: Any) -> Any:
    """jsonschema's `additionalProperties`, matching `patternProperties` under the limit."""
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = sorted(
        key
        for key in instance
        if key not in known and not any(_search(pattern, key) for pattern in patterns)
    )
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        listed = ", ".join(repr(extra) for extra in extras)
        yield jsonschema.ValidationError(f"Additional properties are not allowed ({listed})")


# jsonschema matches these keywords with `re` itself, out of reach of the time limit.
UNLIMITED_WITH_PATTERNS = ("unevaluatedProperties",)


def _schema_validator(schema: Any) -> Validator:
    """The schema's validator (retrieving nothing), every regex it runs under the time limit."""
    return schema_validator(
        schema,
        pattern=_pattern,
        patternProperties=_pattern_properties,
        additionalProperties=_additional_properties,
    )


def _keys_in(schema: object) -> set[str]:
    keys: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            keys.update(k for k in node if isinstance(k, str))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return keys


def _json_in(text: str) -> Any:
    """The answer as JSON: all of it, else the outermost {...} or [...] in it."""
    try:
        return json_parse(text, nul_ok=True)
    except ValueError:
        pass
    for opening, closing in (("{", "}"), ("[", "]")):
        start, end = text.find(opening), text.rfind(closing)
        if 0 <= start < end:
            try:
                return json_parse(text[start : end + 1], nul_ok=True)
            except ValueError:
                continue
    raise ValueError("the answer holds no JSON")


def check_score(*, check: Check, output: str, item_input: str, reference: str) -> CheckScore:
    expected = check.expected or reference
    if check.kind == CheckKind.EXACT:
        passed = output.strip() == expected.strip()
        return CheckScore(float(passed), "" if passed else "differs from the expected text")
    if check.kind == CheckKind.CONTAINS:
        passed = bool(expected) and expected in output
        return CheckScore(float(passed), "" if passed else f"does not contain {expected[:80]!r}")
    if check.kind == CheckKind.REGEX:
        try:
            passed = _search(expected, output)
        except TimeoutError:
            return CheckScore(None, error=RUNAWAY_PATTERN)
        except regex.error as exc:  # stored when another engine checked patterns
            return CheckScore(None, error=f"not a valid regular expression: {exc}")
        return CheckScore(float(passed), "" if passed else f"no match for {expected[:80]!r}")
    if check.kind == CheckKind.JSON_SCHEMA:
        try:
            value = _json_in(output)
        except ValueError as exc:
            return CheckScore(0.0, str(exc))
        try:
            errors = sorted(_schema_validator(check.schema).iter_errors(value), key=str)
        except TimeoutError:
            return CheckScore(None, error=RUNAWAY_PATTERN)
        except Unresolvable as exc:  # stored before references were checked
            return CheckScore(None, error=f"the schema's $ref {exc.ref!r} cannot be resolved")
        except RecursionError:  # a recursive schema stored before they were refused
            return CheckScore(None, error="the schema's references recurse without end")
        if errors:
            return CheckScore(0.0, errors[0].message)
        return CheckScore(1.0)
    return judge_score(check=check, output=output, item_input=item_input, reference=reference)


def judge_messages(*, rubric: str, output: str, item_input: str, reference: str) -> list[dict]:
    case = (
        f"USER MESSAGE:\n{item_input[:MAX_JUDGE_TEXT]}\n\n"
        f"REFERENCE:\n{reference[:MAX_JUDGE_TEXT]}\n\n"
        f"ANSWER:\n{output[:MAX_JUDGE_TEXT]}"
    )
    return [
        {"role": "system", "content": JUDGE_PREAMBLE + (rubric or DEFAULT_RUBRIC) + JUDGE_FORMAT},
        {"role": "user", "content": case},
    ]


def verdict_parse(text: str) -> CheckScore:
    """The judge's reply, checked: JSON (a ```json fence is tolerated) of VERDICT_SCHEMA."""
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fence:
        body = fence.group(1)
    try:
        verdict = json_parse(body, nul_ok=True)
    except ValueError:
        return CheckScore(None, error=f"the judge's reply is not JSON: {text[:200]!r}")
    problems = sorted(jsonschema.Draft202012Validator(VERDICT_SCHEMA).iter_errors(verdict), key=str)
    if problems:
        where = "/".join(str(p) for p in problems[0].path) or "verdict"
        return CheckScore(
            None, error=f"the judge's verdict is malformed ({where}: {problems[0].message})"
        )
    return CheckScore(float(verdict["score"]), str(verdict.get("reason", ""))[:500])


def judge_score(*, check: Check, output: str, item_input: str, reference: str) -> CheckScore:
    endpoint = check.endpoint
    if endpoint is None:
        return CheckScore(None, error="the judge's model endpoint was deleted")
    model = check.model or endpoint.default_model
    tracer = Tracer(
        uuid.uuid4(), agent="experiment-judge", secrets_to_redact=[endpoint.api_key], sandbox=True
    )
    messages = judge_messages(
        rubric=check.rubric, output=output, item_input=item_input, reference=reference
    )
    try:
        text = model_call_guarded(
            tracer=tracer,
            candidates=[(endpoint, model)],
            policy=MODEL_RETRY,
            messages=messages,
            tools=[],
            temperature=0,
            purpose="judge",
        ).reply.content
    except Failure as failure:
        return CheckScore(
            None,
            error=f"the judge's model call failed ({failure.failure_class.value}): "
            f"{tracer.redact(str(failure))[:300]}",
        )
    finally:
        tracer.flush()
    return verdict_parse(text)
