"""Running an agent's guardrails on one text (or one tool call's arguments), in order.

Each guardrail is one `guardrail` span with its outcome: `pass`, `redacted`, `flagged`, or the
action that stopped the text (`block`, `handoff`, `approval`), or `error` when it could not
decide (a classifier's reply that is not a verdict, a pattern that ran too long), which trips
it as if it had found something: a guardrail that cannot check fails closed. The span never
holds what was found, only how many and of which kind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tools.schemas import schema_validator
from tracing import semconv
from tracing.emit import SpanRecord, Tracer
from tracing.platform.failures import FailureClass

from .checks import LABELS, PatternTimeout, findings, redact
from .spec import FINDERS

STOPPING = ("block", "handoff", "approval")


@dataclass(frozen=True)
class ClassifierVerdict:
    passed: bool
    reason: str = ""
    error: str = ""  # the reply was no verdict: the guardrail fails closed


Classify = Callable[[dict[str, Any], str], ClassifierVerdict]


@dataclass
class GuardOutcome:
    """What the guardrails made of a text: the text to go on with (redacted where they
    redact), and the guardrail that stopped it, if one did, with its action."""

    text: str
    stopped_by: dict[str, Any] | None = None
    reason: str = ""
    redacted: list[str] = field(default_factory=list)  # the original texts taken out
    flagged: list[str] = field(default_factory=list)  # names of guardrails that only flagged

    @property
    def action(self) -> str:
        return self.stopped_by["action"] if self.stopped_by else ""


def for_stage(
    guardrails: list[dict[str, Any]], stage: str, *, tool: str = "", mode: str | None = None
) -> list[dict[str, Any]]:
    """The guardrails that check `stage` (for tool stages: those naming `tool`, or all tools)."""
    return [
        g
        for g in guardrails
        if g["stage"] == stage
        and (not tool or not g.get("tools") or tool in g["tools"])
        and (mode is None or g.get("mode", "blocking") == mode)
    ]


def at_the_door(guardrails: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The input guardrails applied as a message is posted, before it is stored or shown
    (agentops.runtime.services.session_post_message): the first ones, in order, that redact
    by a finder — up to the first that decides otherwise, which must see the text as written
    (its run checks it, and those after it)."""
    door = []
    for guardrail in for_stage(guardrails, "input", mode="blocking"):
        if guardrail["action"] != "redact" or guardrail["kind"] not in FINDERS:
            break
        door.append(guardrail)
    return door


def _found(count: int, entities: list[str]) -> str:
    return f"found {', '.join(LABELS[e] for e in entities)} ({count} in all)"


def _span_attributes(guardrail: dict[str, Any]) -> dict[str, Any]:
    return {
        semconv.GUARDRAIL_NAME: guardrail["name"],
        "guardrail.stage": guardrail["stage"],
        "guardrail.kind": guardrail["kind"],
        "guardrail.action": guardrail["action"],
    }


def _trip(span: SpanRecord, guardrail: dict[str, Any], reason: str) -> str:
    """Mark the span with what the guardrail does about what it found; the outcome."""
    action = guardrail["action"]
    outcome = {"redact": "redacted", "flag": "flagged"}.get(action, action)
    span.set(**{semconv.GUARDRAIL_OUTCOME: outcome, "guardrail.reason": reason[:300]})
    if action in STOPPING:
        span.fail(FailureClass.GUARDRAIL, f"{guardrail['name']}: {reason}"[:500])
    return outcome


def guardrails_apply(
    *,
    guardrails: list[dict[str, Any]],
    text: str,
    tracer: Tracer,
    classify: Classify | None = None,
    structured: Any = None,
) -> GuardOutcome:
    """Run `guardrails` on `text` in order. Finders redact or find; a classifier or a
    JSON-schema check gives a verdict (`structured` is what a schema checks, else the text
    parsed as JSON). Stops at the first guardrail whose action stops the text."""
    outcome = GuardOutcome(text=text)
    for guardrail in guardrails:
        with tracer.span(semconv.GUARDRAIL, **_span_attributes(guardrail)) as span:
            reason = _check(guardrail, outcome, span, classify, structured)
            if not reason:
                span.set(**{semconv.GUARDRAIL_OUTCOME: "pass"})
                continue
            result = _trip(span, guardrail, reason)
        if result == "flagged":
            outcome.flagged.append(guardrail["name"])
        if guardrail["action"] in STOPPING:
            outcome.stopped_by, outcome.reason = guardrail, reason
            return outcome
    return outcome


def _check(
    guardrail: dict[str, Any],
    outcome: GuardOutcome,
    span: SpanRecord,
    classify: Classify | None,
    structured: Any,
) -> str:
    """Why the guardrail trips on the outcome's text ("" when it passes); a redacting one
    rewrites the outcome's text."""
    kind = guardrail["kind"]
    if kind in FINDERS:
        try:
            found = findings(guardrail, outcome.text)
        except PatternTimeout as exc:
            span.set(**{"guardrail.error": str(exc)})
            return f"could not check: {exc}"
        if not found:
            return ""
        entities = sorted({f.entity for f in found})
        span.set(**{"guardrail.findings": len(found), "guardrail.entities": entities})
        if guardrail["action"] == "redact":
            outcome.redacted += [outcome.text[f.start : f.end] for f in found]
            outcome.text = redact(outcome.text, found)
        return _found(len(found), entities)
    if kind == "json_schema":
        if structured is None:
            try:
                structured = json.loads(outcome.text)
            except ValueError:
                return "not JSON"
        errors = sorted(
            schema_validator(guardrail["schema"]).iter_errors(structured), key=lambda e: e.path
        )
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            return f"does not fit the schema at {where}: {errors[0].message}"[:300]
        return ""
    if classify is None:  # a parallel classifier, run by the caller beside the model call
        return ""
    verdict = classify(guardrail, outcome.text)
    if verdict.error:
        span.set(**{"guardrail.error": verdict.error[:300]})
        return f"could not check: {verdict.error}"
    return "" if verdict.passed else (verdict.reason or "the classifier flagged it")


def arguments_apply(
    *, guardrails: list[dict[str, Any]], arguments: dict[str, Any], tracer: Tracer
) -> tuple[dict[str, Any], GuardOutcome]:
    """Tool-argument guardrails: finders look at every text in the arguments (and redact
    there), a JSON schema checks the arguments as a whole. The arguments to run with, and the
    outcome (its `text` is the arguments as JSON)."""
    text = json.dumps(arguments, ensure_ascii=False)
    outcome = GuardOutcome(text=text)
    for guardrail in guardrails:
        if guardrail["kind"] in FINDERS:
            redacted_arguments, one = _strings_apply(guardrail, arguments, tracer)
            arguments = redacted_arguments
            outcome.redacted += one.redacted
            outcome.flagged += one.flagged
            if one.stopped_by:
                outcome.stopped_by, outcome.reason = one.stopped_by, one.reason
                break
            continue
        one = guardrails_apply(
            guardrails=[guardrail], text=text, tracer=tracer, structured=arguments
        )
        outcome.flagged += one.flagged
        if one.stopped_by:
            outcome.stopped_by, outcome.reason = one.stopped_by, one.reason
            break
    outcome.text = json.dumps(arguments, ensure_ascii=False)
    return arguments, outcome


def _strings_apply(
    guardrail: dict[str, Any], arguments: dict[str, Any], tracer: Tracer
) -> tuple[dict[str, Any], GuardOutcome]:
    """One finder over every text in the arguments, as one decision (one span)."""
    outcome = GuardOutcome(text="")
    entities: set[str] = set()
    count = 0

    def visit(value: Any) -> Any:
        nonlocal count
        if isinstance(value, str):
            found = findings(guardrail, value)
            count += len(found)
            entities.update(f.entity for f in found)
            if found and guardrail["action"] == "redact":
                outcome.redacted += [value[f.start : f.end] for f in found]
                return redact(value, found)
            return value
        if isinstance(value, dict):
            return {k: visit(v) for k, v in value.items()}
        if isinstance(value, list):
            return [visit(v) for v in value]
        return value

    with tracer.span(semconv.GUARDRAIL, **_span_attributes(guardrail)) as span:
        try:
            checked = visit(arguments)
            reason = ""
            if count:
                span.set(**{"guardrail.findings": count, "guardrail.entities": sorted(entities)})
                reason = _found(count, sorted(entities))
        except PatternTimeout as exc:
            checked, reason = arguments, f"could not check: {exc}"
            span.set(**{"guardrail.error": str(exc)})
        if not reason:
            span.set(**{semconv.GUARDRAIL_OUTCOME: "pass"})
            return arguments, outcome
        result = _trip(span, guardrail, reason)
    if result == "flagged":
        outcome.flagged.append(guardrail["name"])
    if guardrail["action"] in STOPPING:
        outcome.stopped_by, outcome.reason = guardrail, reason
    return checked, outcome
