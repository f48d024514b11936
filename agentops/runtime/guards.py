"""An agent's guardrails as one run applies them (the checks themselves: agentops/guardrails).

- input: on the run's user message before the first model call (blocking ones), and beside
  that call (parallel classifiers: a pass costs no latency, a trip discards the answer);
- output: on the model's answer before anyone sees it (the answer is then not streamed);
- tool_arguments / tool_result: on a call's arguments before it runs, and on its result
  before the model reads it (agentops/runtime/tooling.py calls these).

A redaction applies to everything the text goes to next: the stored message is rewritten in
the run's step, the model is sent the redacted text, and the originals are taken out of the
trace (`Tracer.forget`). Blocking stores the guardrail's message as the agent's reply and
fails the run with the `guardrail` class (listed on the failures page); a handoff hands the
conversation to the agent's team.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction

from agentops.guardrails.classify import classifier_for
from agentops.guardrails.services import (
    ClassifierVerdict,
    GuardOutcome,
    arguments_apply,
    at_the_door,
    for_stage,
    guardrails_apply,
)
from agentops.models import Message, Role
from agentops.runtime.context import message_tokens
from agentops.runtime.errors import HandoffRequired
from tracing.platform.failures import Failure, FailureClass

if TYPE_CHECKING:
    from collections.abc import Callable

    from agentops.runtime.loop import RunDriver
    from agentops.runtime.model_client import ModelReply


class GuardrailStop(Failure):
    """A guardrail blocked the run (its reply is stored already)."""

    def __init__(self, outcome: GuardOutcome, stage: str) -> None:
        guardrail = outcome.stopped_by or {}
        super().__init__(
            FailureClass.GUARDRAIL,
            f"blocked by guardrail {guardrail.get('name', '?')} ({stage}): {outcome.reason}",
        )


class RunGuards:
    def __init__(self, driver: RunDriver) -> None:
        self.driver = driver
        self.guardrails = driver.config.guardrails
        # An answer is checked before anyone sees it (or a classifier beside its call may yet
        # discard it), so it is not streamed as it comes.
        self.holds_answers = bool(
            for_stage(self.guardrails, "output")
            or for_stage(self.guardrails, "input", mode="parallel")
        )
        self._classify: Callable[[dict[str, Any], str], ClassifierVerdict] | None = None

    def classify(self, guardrail: dict[str, Any], text: str) -> ClassifierVerdict:
        if self._classify is None:
            self._classify = classifier_for(
                tracer=self.driver.tracer,
                default=self.driver.candidates[0],
                should_stop=self.driver.beat.lost.is_set,
            )
        return self._classify(guardrail, text)

    # -- input ---------------------------------------------------------------------------
    def check_input(self) -> None:
        """Before the run's first model call: the blocking input guardrails on its message."""
        driver = self.driver
        blocking = for_stage(self.guardrails, "input", mode="blocking")
        trigger_id = driver.run.trigger_id
        message = next((m for m in driver.transcript.messages if m.pk == trigger_id), None)
        if not blocking or message is None or driver.run.model_calls:
            return
        self.redact_unanswered(blocking, message)
        if (driver.run.state or {}).get("input_redacted"):  # done as it was posted
            door = at_the_door(self.guardrails)
            blocking = [g for g in blocking if g not in door]
        outcome = guardrails_apply(
            guardrails=blocking, text=message.content, tracer=driver.tracer, classify=self.classify
        )
        if outcome.text != message.content:
            self.message_rewrite(message, outcome)
        self.stop_if_tripped(outcome, "input")

    def redact_unanswered(self, blocking: list[dict[str, Any]], trigger: Message) -> None:
        """User messages since the agent last spoke that started no run of their own (sent
        while a person had the conversation): the redacting guardrails apply to them too,
        before the model reads them."""
        redacting = [g for g in blocking if g["action"] == "redact"]
        for message in reversed(self.driver.transcript.messages):
            if message.role == Role.ASSISTANT:
                break
            if message.role != Role.USER or message.pk == trigger.pk or not redacting:
                continue
            outcome = guardrails_apply(
                guardrails=redacting, text=message.content, tracer=self.driver.tracer
            )
            if outcome.text != message.content:
                self.message_rewrite(message, outcome)

    def message_rewrite(self, message: Message, outcome: GuardOutcome) -> None:
        """The user's message as redacted, stored in the run's next step (fenced)."""
        driver = self.driver
        driver.tracer.forget(outcome.redacted)
        message.content = outcome.text
        message.token_count = message_tokens(content=outcome.text)
        with transaction.atomic():
            Message.objects.filter(pk=message.pk).update(
                content=message.content, token_count=message.token_count
            )
            driver.checkpoint(messages=[])

    def beside_first_call(self) -> ParallelCheck | None:
        """The parallel input classifiers, started beside the run's first model call."""
        driver = self.driver
        parallel = for_stage(self.guardrails, "input", mode="parallel")
        trigger_id = driver.run.trigger_id
        message = next((m for m in driver.transcript.messages if m.pk == trigger_id), None)
        if not parallel or message is None or driver.run.model_calls:
            return None
        check = ParallelCheck(self, parallel, message.content)
        check.start()
        return check

    # -- output --------------------------------------------------------------------------
    def check_output(self, reply: ModelReply) -> GuardOutcome | None:
        """The model's answer, before anyone sees it: `reply` is rewritten where a guardrail
        redacts, and emptied (a block: its message instead) where one stops it; the outcome
        that stopped it, for `stop_if_tripped` once the step is stored."""
        if not self.holds_answers or not reply.content:
            return None
        guardrails = [
            g
            for g in for_stage(self.guardrails, "output")
            if g["kind"] != "json_schema" or not reply.tool_calls  # a schema checks answers
        ]
        tracer = self.driver.tracer
        outcome = guardrails_apply(
            guardrails=guardrails, text=reply.content, tracer=tracer, classify=self.classify
        )
        tracer.forget(outcome.redacted)
        reply.content = outcome.text
        if outcome.stopped_by is None:
            return None
        self.withhold(reply, outcome)
        return outcome

    def withhold(self, reply: ModelReply, outcome: GuardOutcome) -> None:
        """A guardrail stopped the answer: the model's text is never stored nor shown (a
        block stores the guardrail's message in its place)."""
        self.driver.tracer.forget([reply.content])
        reply.tool_calls = []
        reply.content = outcome.stopped_by["message"] if outcome.stopped_by else ""
        if outcome.action != "block":
            reply.content = ""

    # -- stopping ------------------------------------------------------------------------
    def stop_if_tripped(self, outcome: GuardOutcome, stage: str) -> None:
        """Block (the guardrail's message as the agent's reply, the run fails) or hand off."""
        guardrail = outcome.stopped_by
        if guardrail is None:
            return
        if outcome.action == "handoff":
            raise HandoffRequired(
                f"guardrail {guardrail['name']} ({stage}): {outcome.reason}",
                failure_class=FailureClass.GUARDRAIL,
            )
        if stage == "input":
            text = guardrail["message"]
            self.driver.checkpoint(
                messages=[
                    Message(
                        role=Role.ASSISTANT, content=text, token_count=message_tokens(content=text)
                    )
                ],
                state={"guardrail": stop_record(outcome, stage)},
            )
        raise GuardrailStop(outcome, stage)

    def stop_again(self) -> None:
        """A run whose last step recorded a guardrail's stop (its worker died before the run
        ended) ends the same way on resume, without asking the model again."""
        held = (self.driver.run.state or {}).get("guardrail")
        if not isinstance(held, dict):
            return
        outcome = GuardOutcome(
            text="",
            stopped_by={
                "name": held.get("name", "?"),
                "action": held.get("action", "block"),
                "message": "",
            },
            reason=str(held.get("reason", "")),
        )
        stage = str(held.get("stage", "output"))
        if outcome.action == "handoff":
            self.stop_if_tripped(outcome, stage)
        raise GuardrailStop(outcome, stage)

    # -- tools ---------------------------------------------------------------------------
    def check_arguments(
        self, tool: str, arguments: dict[str, Any]
    ) -> tuple[dict[str, Any], GuardOutcome]:
        guardrails = for_stage(self.guardrails, "tool_arguments", tool=tool)
        if not guardrails:
            return arguments, GuardOutcome(text="")
        checked, outcome = arguments_apply(
            guardrails=guardrails, arguments=arguments, tracer=self.driver.tracer
        )
        self.driver.tracer.forget(outcome.redacted)
        return checked, outcome

    def check_result(self, tool: str, text: str) -> GuardOutcome:
        guardrails = for_stage(self.guardrails, "tool_result", tool=tool)
        if not guardrails:
            return GuardOutcome(text=text)
        outcome = guardrails_apply(guardrails=guardrails, text=text, tracer=self.driver.tracer)
        self.driver.tracer.forget(outcome.redacted)
        return outcome


def stop_record(outcome: GuardOutcome, stage: str) -> dict[str, str]:
    """A guardrail's stop as the run's state keeps it, with the step that stopped."""
    guardrail = outcome.stopped_by or {}
    return {
        "stage": stage,
        "name": str(guardrail.get("name", "?")),
        "action": outcome.action,
        "reason": outcome.reason[:300],
    }


class ParallelCheck(threading.Thread):
    """Parallel input classifiers in a thread of their own, in a forked tracer (adopted into
    the run's when joined). A trip sets `tripped`, which stops the model call at its next
    chunk; its answer is discarded."""

    def __init__(self, guards: RunGuards, guardrails: list[dict[str, Any]], text: str) -> None:
        super().__init__(daemon=True, name="guardrails")
        self.guards = guards
        self.guardrails = guardrails
        self.text = text
        self.tracer = guards.driver.tracer.fork()
        self.tripped = threading.Event()
        self.outcome: GuardOutcome | None = None

    def run(self) -> None:
        driver = self.guards.driver
        classify = classifier_for(
            tracer=self.tracer,
            default=driver.candidates[0],
            should_stop=driver.beat.lost.is_set,
        )
        try:
            self.outcome = guardrails_apply(
                guardrails=self.guardrails, text=self.text, tracer=self.tracer, classify=classify
            )
        except Exception as exc:  # a bug here must not pass the text unchecked
            self.outcome = GuardOutcome(
                text=self.text,
                stopped_by={**self.guardrails[0], "action": "block"},
                reason=f"could not check: {type(exc).__name__}",
            )
        finally:
            connection.close()  # this thread's own connection
        if self.outcome.stopped_by is not None:
            self.tripped.set()

    def finish(self) -> GuardOutcome:
        """Wait for the verdict; its records join the run's trace."""
        self.join()
        self.guards.driver.tracer.adopt(self.tracer)
        assert self.outcome is not None
        return self.outcome
