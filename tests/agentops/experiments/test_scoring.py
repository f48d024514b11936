"""Checks, and the LLM judge through the real openai client against the dev model server."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.utils import timezone

from agentops.experiments.models import Check, CheckKind
from agentops.experiments.scoring import check_score
from agentops.models import BreakerState
from tests.factories import EndpointFactory
from tracing.models import Span

pytestmark = pytest.mark.django_db


def _score(check: Check, output: str, reference: str = "You said: hi") -> tuple:
    result = check_score(check=check, output=output, item_input="hi", reference=reference)
    return result.score, result.error


def test_it_scores_exact_contains_regex_and_json_schema():
    exact = Check(kind=CheckKind.EXACT)
    assert _score(exact, " You said: hi\n") == (1.0, "")
    assert _score(exact, "you said: hi") == (0.0, "")
    contains = Check(kind=CheckKind.CONTAINS, expected="refund")
    assert _score(contains, "Your refund is on its way") == (1.0, "")
    assert _score(contains, "Your money is on its way") == (0.0, "")
    regex = Check(kind=CheckKind.REGEX, expected=r"order #\d+")
    assert _score(regex, "See order #42.") == (1.0, "")
    assert _score(regex, "See order #x.") == (0.0, "")
    schema = Check(
        kind=CheckKind.JSON_SCHEMA,
        schema={
            "type": "object",
            "required": ["total"],
            "properties": {"total": {"type": "number"}},
        },
    )
    assert _score(schema, '{"total": 3.5}') == (1.0, "")
    assert _score(schema, 'Here it is: {"total": 3.5} as asked') == (1.0, "")
    assert _score(schema, '{"total": "3.5"}') == (0.0, "")
    assert _score(schema, "no json here") == (0.0, "")


def test_it_scores_an_error_not_a_hang_for_a_pattern_that_backtracks_for_ever():
    runaway = Check(kind=CheckKind.REGEX, expected=r"(a|aa)+$")
    woke: list[float] = []
    # On purpose: a thread that only sleeps, to see whether it wakes while the match runs.
    beside = threading.Thread(target=lambda: time.sleep(0.2) or woke.append(time.monotonic()))
    beside.start()  # another run's thread in the same worker
    score, error = _score(runaway, "a" * 60 + "b")
    ended = time.monotonic()
    beside.join()
    assert score is None and "ran over 1 s on this answer" in error
    assert woke[0] < ended - 0.5  # it went on meanwhile: the match let go of the GIL
    assert _score(runaway, "aaaa") == (1.0, "")
    # The same limit holds for the patterns of a JSON-schema check.
    for schema in (
        {"properties": {"code": {"type": "string", "pattern": "(a|aa)+$"}}},
        {"patternProperties": {"(a|aa)+$": {"type": "number"}}},
        {
            "additionalProperties": False,
            "patternProperties": {"(a|aa)+$": {}},
            "properties": {"code": {}},
        },
    ):
        check = Check(kind=CheckKind.JSON_SCHEMA, schema=schema)
        score, error = _score(check, json.dumps({"code": "a" * 60 + "b", "a" * 60 + "b": 1}))
        assert score is None and "ran over 1 s on this answer" in error, schema
        assert _score(check, json.dumps({"code": "aaa", "aaa": 1})) == (1.0, "")
    pattern = Check(kind=CheckKind.JSON_SCHEMA, schema={"pattern": "^#\\d+$"})
    assert _score(pattern, '"#12"') == (1.0, "") and _score(pattern, '"#x"') == (0.0, "")


def test_it_scores_an_answer_nested_without_end_as_no_json():
    """Model output is untrusted: 5,000 brackets deep is a 0 with a reason, not a RecursionError."""
    schema = Check(kind=CheckKind.JSON_SCHEMA, schema={"type": "array"})
    result = check_score(check=schema, output="[" * 5000 + "]" * 5000, item_input="", reference="")
    assert (result.score, result.detail) == (0.0, "the answer holds no JSON")


def test_it_checks_additional_properties_as_jsonschema_does():
    closed = Check(
        kind=CheckKind.JSON_SCHEMA,
        schema={
            "properties": {"total": {}},
            "patternProperties": {"^x-": {"type": "string"}},
            "additionalProperties": False,
        },
    )
    assert _score(closed, '{"total": 1, "x-note": "ok"}') == (1.0, "")
    result = check_score(
        check=closed, output='{"total": 1, "other": 2}', item_input="", reference=""
    )
    assert result.score == 0.0 and "'other'" in result.detail
    typed = Check(kind=CheckKind.JSON_SCHEMA, schema={"additionalProperties": {"type": "number"}})
    assert _score(typed, '{"a": 1}') == (1.0, "") and _score(typed, '{"a": "x"}') == (0.0, "")


def test_it_never_fetches_a_schema_reference_to_score():
    # One stored before references were checked at entry: an error, and nothing read.
    remote = Check(kind=CheckKind.JSON_SCHEMA, schema={"$ref": "file:///etc/hostname"})
    score, error = _score(remote, '{"a": 1}')
    assert score is None and error == "the schema's $ref 'file:///etc/hostname' cannot be resolved"


@pytest.fixture
def judge(devmodel, model_name):  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory(base_url=devmodel.url, default_model=model_name)
    return Check(kind=CheckKind.JUDGE, endpoint=endpoint, rubric="Same facts as the reference.")


def test_it_asks_the_judge_and_reads_its_verdict(judge, devmodel, model_name):
    assert _score(judge, "Well: You said: hi") == (1.0, "")
    assert _score(judge, "YOU SAID: HI") == (0.0, "")
    (first, _) = devmodel.requests(model_name)
    system, user = first["transcript"]
    assert system[1].startswith("You are a judge") and "Same facts as the reference." in system[1]
    assert "REFERENCE:\nYou said: hi" in user[1] and "ANSWER:\nWell: You said: hi" in user[1]


def test_it_records_a_clear_error_for_a_judge_reply_that_is_not_a_verdict(judge):
    judge.rubric = "Be strict. [[malformed]]"
    score, error = _score(judge, "You said: hi")
    assert score is None
    assert error.startswith("the judge's reply is not JSON: 'The answer looks fine")
    judge.rubric = "Be strict. [[invalid]]"
    score, error = _score(judge, "You said: hi")
    assert score is None
    assert error.startswith("the judge's verdict is malformed (")


def test_it_records_the_judges_model_failure_after_retrying(judge, devmodel, model_name):
    devmodel.script(model_name, faults=[{"status": 500}] * 3)
    score, error = _score(judge, "You said: hi")
    assert score is None
    assert error.startswith("the judge's model call failed (")
    assert len(devmodel.requests(model_name)) == 3  # the retry owner tried three times


def test_it_never_retries_the_judge_against_an_open_breaker(judge, devmodel, model_name):
    """An open breaker is refused at once, as everywhere (model_call asks the breaker and
    BreakerOpen is not transient): no retry, no wait, no request."""
    endpoint = judge.endpoint
    endpoint.breaker_state, endpoint.breaker_opened_at = BreakerState.OPEN, timezone.now()
    endpoint.breaker_cooldown_seconds = 600
    endpoint.save()
    score, error = _score(judge, "You said: hi")
    assert score is None and "circuit breaker open" in error
    assert not Span.objects.filter(name="retry.wait").exists()
    assert devmodel.requests(model_name) == []
