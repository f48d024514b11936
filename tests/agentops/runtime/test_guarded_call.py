"""The one guarded model call (`model_client.model_call_guarded`) as each of its four callers
meets it: the loop's chat call, the handoff package, the judge and the playground. An open
breaker is never retried and its endpoint never reached: the call falls to the next candidate,
or fails with the breaker's class when there is none. A transient failure is retried up to the
policy, each wait a `retry.wait` span, the same way for all four. Real endpoints on the dev
model server (faults scripted per model), attempts counted by their `model.call` spans."""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.utils import timezone

from agentops.experiments.models import Check, CheckKind
from agentops.experiments.scoring import check_score
from agentops.models import (
    Agent,
    AgentFallback,
    BreakerState,
    Handoff,
    Message,
    ModelEndpoint,
    Role,
    RunStatus,
)
from agentops.playground.services import playground_run
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.handoff_package import handoff_package_write
from agentops.runtime.retry import MODEL_RETRY
from agentops.runtime.services import session_create, session_post_message
from agentops.testing.processes import DevModel
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import EndpointFactory
from tracing.models import Span
from tracing.platform.types import Actor

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]
MODEL_FAILED = re.compile(r"model (?:call )?failed (?:with |\()(\w+)")


@dataclass(frozen=True)
class Outcome:
    """What a caller made of its guarded call: the answer, or the class it failed with."""

    answer: str = ""
    failure_class: str = ""
    message: str = ""


Caller = Callable[[Agent, str, Actor], Outcome]


def loop_chat(agent: Agent, content: str, actor: Actor) -> Outcome:
    """A run's chat call, on a real worker."""
    session = session_create(agent=agent, external_user="erin")
    run = wait_for_run(session_post_message(session=session, content=content).pk)
    if run.status == RunStatus.SUCCEEDED:
        answer = Message.objects.filter(run=run, role=Role.ASSISTANT).order_by("seq").last()
        return Outcome(answer=answer.content if answer else "")
    return Outcome(failure_class=run.error_class, message=run.error_message or run.wait_reason)


def handoff_package(agent: Agent, content: str, actor: Actor) -> Outcome:
    """The summary of a handoff's context package."""
    session = session_create(agent=agent, external_user="erin")
    messages_append(session_id=session.pk, messages=[Message(role=Role.USER, content=content)])
    handoff = Handoff.objects.create(session=session, reason="the user asked for a person")
    summary = handoff_package_write(handoff_id=handoff.pk).summary
    failed = MODEL_FAILED.search(summary)
    if failed:
        return Outcome(failure_class=failed.group(1), message=summary)
    return Outcome(answer=summary)


def judge(agent: Agent, content: str, actor: Actor) -> Outcome:
    """A judge's verdict on an answer (its only endpoint: the agent's)."""
    check = Check(kind=CheckKind.JUDGE, endpoint=agent.endpoint, rubric="Same facts.")
    score = check_score(check=check, output=content, item_input="hi", reference=content)
    failed = MODEL_FAILED.search(score.error)
    if failed:
        return Outcome(failure_class=failed.group(1), message=score.error)
    assert score.score is not None, score.error
    return Outcome(answer=str(score.score))


def playground(agent: Agent, content: str, actor: Actor) -> Outcome:
    """A playground run (its only endpoint: the agent's)."""
    run = playground_run(
        source_trace_id=uuid.uuid4(),
        source_span_id="0" * 16,
        endpoint=agent.endpoint,
        model=agent.endpoint.default_model,
        temperature=None,
        messages=[{"role": "user", "content": content}],
        tools=[],
        actor=actor,
    )
    if run.succeeded:
        return Outcome(answer=run.output_content)
    return Outcome(failure_class=run.error_class, message=run.error_message)


CALLERS: dict[str, tuple[str, Caller]] = {
    "loop": ("chat", loop_chat),
    "handoff_package": ("handoff", handoff_package),
    "judge": ("judge", judge),
    "playground": ("playground", playground),
}
WITH_FALLBACKS = {"loop", "handoff_package"}  # a judge and a playground run have one endpoint


@pytest.fixture
def agent(dev_agent: Agent) -> Agent:
    dev_agent.retry_max_attempts = MODEL_RETRY.max_attempts  # the policy of all four alike
    dev_agent.save()
    return dev_agent


def model_calls(purpose: str) -> list[Span]:
    return [
        span
        for span in Span.objects.filter(name="model.call").order_by("seq")
        if span.attributes.get("purpose") == purpose
    ]


def breaker_opened(endpoint: ModelEndpoint) -> None:
    endpoint.breaker_state, endpoint.breaker_opened_at = BreakerState.OPEN, timezone.now()
    endpoint.breaker_cooldown_seconds = 600
    endpoint.save()


@pytest.mark.parametrize("caller_name", list(CALLERS))
def test_an_open_breaker_is_never_retried_nor_reached(
    caller_name: str, worker: object, agent: Agent, devmodel: DevModel, alice: Actor
) -> None:
    purpose, caller = CALLERS[caller_name]
    primary = agent.endpoint
    breaker_opened(primary)
    fallback = None
    if caller_name in WITH_FALLBACKS:
        fallback = EndpointFactory(
            base_url=devmodel.url, default_model=primary.default_model + "-b"
        )
        AgentFallback.objects.create(agent=agent, position=1, endpoint=fallback)

    outcome = caller(agent, "You said: hi", alice)

    calls = model_calls(purpose)
    assert [c for c in calls if c.attributes["endpoint"] == primary.name] == []
    assert devmodel.requests(primary.default_model) == []
    assert not Span.objects.filter(name="retry.wait").exists()  # an open breaker: no retry
    fallbacks = Span.objects.filter(name="fallback")
    if fallback is None:
        assert outcome.failure_class == "server_error", outcome
        assert calls == [] and not fallbacks.exists()
        return
    assert outcome.answer and not outcome.failure_class, outcome
    assert {c.attributes["endpoint"] for c in calls} == {fallback.name}
    assert all(c.status == "ok" for c in calls)
    assert {(f.attributes["reason"], f.attributes["to_endpoint"]) for f in fallbacks} == {
        ("breaker_open", fallback.name)
    }


@pytest.mark.parametrize("caller_name", list(CALLERS))
def test_a_transient_failure_is_retried_up_to_the_policy(
    caller_name: str, worker: object, agent: Agent, devmodel: DevModel, alice: Actor
) -> None:
    """As many 500s as the policy has attempts, then an answer: every caller tries exactly
    that often (more would have been answered), waiting in a `retry.wait` between tries."""
    purpose, caller = CALLERS[caller_name]
    attempts = MODEL_RETRY.max_attempts
    devmodel.script(agent.endpoint.default_model, faults=[{"status": 500}] * attempts)

    outcome = caller(agent, "You said: hi", alice)

    assert outcome.failure_class == "server_error", outcome
    failed = [c for c in model_calls(purpose) if c.status == "error"]
    assert [(c.attributes["attempt"], c.error_class) for c in failed] == [
        (n, "server_error") for n in range(1, attempts + 1)
    ]
    waits = Span.objects.filter(name="retry.wait").order_by("seq")
    assert [(w.attributes["attempt"], w.attributes["error.type"]) for w in waits] == [
        (n, "server_error") for n in range(1, attempts)
    ]


def called_name(node: ast.AST) -> str:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id
    return ""


def test_only_the_guarded_call_calls_a_model() -> None:
    """One owner: no module but model_client calls `model_call`, and none but model_client and
    the tool runner runs `retry_call` (model calls retry inside the guarded call)."""
    callers: dict[str, set[str]] = {"model_call": set(), "retry_call": set()}
    for package in ("agentops", "tracing", "memory", "tools"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                name = called_name(node)
                if name in callers:
                    callers[name].add(str(path.relative_to(ROOT)))
    assert callers == {
        "model_call": {"agentops/runtime/model_client.py"},
        "retry_call": {"agentops/runtime/model_client.py", "agentops/runtime/tooling.py"},
    }
