"""Tool calls inside a run: validation, approval, idempotent execution with retries and
fallback tools, and the tool message the model reads back. Model output is untrusted:
unknown tools, malformed JSON and failing arguments become tool messages, not crashes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agentops.agent_config import BUILTIN_TOOLS
from agentops.events import event_record
from agentops.models import (
    ForkOutcome,
    ForkTools,
    Message,
    Role,
    Run,
    ToolCall,
    ToolCallStatus,
)
from agentops.runtime.agent_calls import (
    AgentCallRecording,
    agent_call_recordings,
    agent_tool_entry,
    chain_tokens,
    child_answer,
    child_start,
)
from agentops.runtime.checkpoint import fenced_update
from agentops.runtime.context import message_tokens
from agentops.runtime.errors import HandoffRequired, WaitRequired
from agentops.runtime.model_client import connection_release
from agentops.runtime.retry import RetryPolicy, retry_call
from agentops.runtime.transfers import TransferRequired, transfer_entry, transfer_refusal
from tools.executors import ToolContext, ToolResult, arguments_errors, as_text, tool_execute
from tools.models import ToolDefinition
from tracing.models import Span
from tracing.platform.failures import Failure, FailureClass
from tracing.platform.json_input import JsonInputError, json_parse
from tracing.platform.live import broadcast, session_group

if TYPE_CHECKING:
    from agentops.runtime.loop import RunDriver

MAX_IDENTICAL_CALLS = 2
MAX_TOOL_FAILURES = 3
# Re-sends of a keyed call found in doubt (its worker died while it ran), before a person
# checks: a call that every worker dies in is the call's doing. Not three: a chaos run's
# kills aimed at calls in flight hit the one long call again and again (test_crash).
MAX_KEYED_RESENDS = 10


def canonical(arguments: object) -> str:
    return json.dumps(arguments, sort_keys=True, separators=(",", ":"))


class ToolRunner:
    def __init__(self, driver: RunDriver) -> None:
        self.driver = driver
        self._tools: dict[str, ToolDefinition] | None = None
        # Records of finished idempotent calls, committed with the step's checkpoint.
        self.deferred: list[ToolCall] = []
        earlier = ToolCall.objects.filter(run_id=driver.run.pk).only("tool_name", "arguments")
        self.calls_made = Counter(
            (c.tool_name, canonical(c.arguments))
            for c in (earlier if driver.run.jobs_started > 1 else [])
        )

    def available(self) -> list[ToolDefinition]:
        if self._tools is None:
            config = self.driver.config
            # A built-in tool the agent turned off is not offered even if ticked as a tool.
            rows = ToolDefinition.objects.filter(
                Q(pk__in=config.tool_ids) | Q(name__in=config.builtins), enabled=True
            ).exclude(name__in=config.builtins_off)
            self._tools = {t.name: t for t in rows.select_related("fallback").distinct()}
        return list(self._tools.values())

    def get(self, name: str) -> ToolDefinition | None:
        self.available()
        assert self._tools is not None
        return self._tools.get(name)

    # -- one call ------------------------------------------------------------------------
    def run_call(self, call: dict[str, Any]) -> None:
        driver = self.driver
        call_id = str(call.get("id") or "")
        function = call.get("function") or {}
        name = str(function.get("name") or "")
        raw = function.get("arguments") or ""
        control: dict[str, Any] | None = None
        with driver.tracer.span(
            "step", step=driver.run.step + 1, kind="tool", **{"gen_ai.tool.name": name}
        ):
            text, control = self.resolve(call_id, name, raw)
        message = Message(
            role=Role.TOOL,
            tool_call_id=call_id,
            name=name[:100],
            content=text,
            token_count=message_tokens(content=text),
        )
        if control and control.get("transfer"):  # its answer is stored with the transfer
            records, self.deferred = self.deferred, []
            transfer = control["transfer"]
            raise TransferRequired(
                transfer["target"], transfer["reason"], answer=message, records=records
            )
        extra: dict[str, Any] = {}
        if control and control.get("rollup"):  # a child run's tokens count on its caller
            extra["tokens_in"] = driver.run.tokens_in + control["rollup"]["tokens_in"]
            extra["tokens_out"] = driver.run.tokens_out + control["rollup"]["tokens_out"]
            extra["state"] = {}  # no longer waiting for it
        if control and control.get("scratchpad"):
            notes = {**(driver.session.scratchpad or {}), **control["scratchpad"]}
            driver.session.scratchpad = notes
            driver.parts.notes = notes
            from agentops.models import Session

            with transaction.atomic():
                Session.objects.filter(pk=driver.session.pk).update(scratchpad=notes)
                driver.checkpoint(messages=[message], records=self.deferred, **extra)
        else:
            driver.checkpoint(messages=[message], records=self.deferred, **extra)
        self.deferred = []
        self.result_shown(message)
        if control and control.get("handoff"):
            handoff = control["handoff"]
            raise HandoffRequired(
                handoff["reason"],
                team=handoff.get("team", ""),
                priority=handoff.get("priority", 2),
                failure_class=handoff.get("failure_class", ""),
            )
        failures = sum(
            1
            for m in driver.transcript.messages
            if m.run_id == driver.run.pk and m.role == Role.TOOL and m.content.startswith("Error")
        )
        if failures >= MAX_TOOL_FAILURES:
            raise HandoffRequired(
                f"repeated tool failure ({failures} failed tool calls in this run)",
                failure_class=FailureClass.TOOL_ERROR,
            )

    def result_shown(self, message: Message) -> None:
        """A call's stored result, to whoever watches the conversation live."""
        broadcast(
            session_group(self.driver.session.pk),
            {
                "kind": "tool.result",
                "run_id": str(self.driver.run.pk),
                "call_id": message.tool_call_id,
                "tool": message.name,
                "content": message.content[:2000],
            },
        )

    def resolve(self, call_id: str, name: str, raw: str) -> tuple[str, dict[str, Any] | None]:
        """The text the model will read for this call, and any control request from the tool."""
        tracer = self.driver.tracer
        entry = transfer_entry(transfers=self.driver.config.transfers, tool=name)
        if entry is not None:
            return self.transfer_asked(name, entry, raw)
        entry = agent_tool_entry(agent_tools=self.driver.config.agent_tools, tool=name)
        if entry is not None:
            return self.agent_asked(call_id, name, entry, raw)
        tool = self.get(name)
        if tool is None:
            names = ", ".join(sorted(t.name for t in self.available())) or "none"
            off = name in BUILTIN_TOOLS and name in self.driver.config.builtins_off
            tracer.event(
                "tool.rejected",
                status="error",
                error_class=FailureClass.INVALID_REQUEST,
                error_message=f"unknown tool {name!r}",
                **{"gen_ai.tool.name": name},
            )
            if off:
                return (
                    f"Error: the tool {name} is turned off for this agent. Available tools: {names}.",
                    None,
                )
            return f"Error: there is no tool named {name[:100]!r}. Available tools: {names}.", None
        try:
            # A NUL is kept (as U+FFFD when stored); what no replacement can fix is refused.
            arguments = json_parse(raw, nul_ok=True) if raw.strip() else {}
        except JsonInputError as exc:
            # Nested too deep or holding text Postgres cannot store (a lone surrogate).
            tracer.event(
                "tool.rejected",
                status="error",
                error_class=FailureClass.INVALID_REQUEST,
                error_message=f"unusable JSON: {exc}",
                **{"gen_ai.tool.name": name},
            )
            return (
                f"Error: the arguments for {name} cannot be used: {exc}. "
                "Send a JSON object matching the tool's schema."
            ), None
        except json.JSONDecodeError as exc:
            tracer.event(
                "tool.rejected",
                status="error",
                error_class=FailureClass.INVALID_REQUEST,
                error_message=f"malformed JSON: {exc}",
                **{"gen_ai.tool.name": name},
            )
            return (
                f"Error: the arguments for {name} are not valid JSON ({exc.msg} at position {exc.pos}). "
                "Send a JSON object matching the tool's schema."
            ), None
        problems = arguments_errors(tool, arguments)
        if problems:
            tracer.event(
                "tool.rejected",
                status="error",
                error_class=FailureClass.INVALID_REQUEST,
                error_message="; ".join(problems),
                **{"gen_ai.tool.name": name},
            )
            return f"Error: the arguments for {name} do not fit its schema: " + "; ".join(
                problems
            ), None
        arguments, guarded = self.driver.guards.check_arguments(name, arguments)
        if guarded.action == "block" and guarded.stopped_by is not None:
            return (
                f"Error: the call to {name} was refused by the guardrail "
                f"{guarded.stopped_by['name']} ({guarded.reason}); it was not run. "
                f"{guarded.stopped_by['message']}"
            ), None
        needs_approval = tool.requires_approval or guarded.action == "approval"
        key = (name, canonical(arguments))
        if self.calls_made[key] >= MAX_IDENTICAL_CALLS:
            raise HandoffRequired(
                f"repeated identical tool call: {name} with the same arguments "
                f"{self.calls_made[key] + 1} times",
                failure_class=FailureClass.LIMIT,
            )
        if self.driver.session.sandbox and needs_approval:
            # A sandbox session (experiment, draft chat, fork) asks no operator: the run would
            # wait for a person forever, and operators never see it.
            return (
                f"Not executed in a test conversation (a draft chat, an experiment or a fork): "
                f"{tool.name} needs an operator's approval, and no operator is asked here. Go on "
                "without it, or tell the user it was not done."
            ), None
        if self.driver.session.fork_tools:
            forked = self.fork_guard(call_id, tool, arguments)
            if forked is not None:
                return forked, None
        row = self.existing_row(call_id)
        if row is not None and row.status == ToolCallStatus.SUCCEEDED:
            return row.result, None  # completed before a crash: never executed twice
        if row is not None and row.status == ToolCallStatus.FAILED:
            return f"Error: the tool {name} failed ({row.error_class}): {row.result[:500]}", None
        if row is not None and row.status == ToolCallStatus.REJECTED:
            return (
                f"Error: a human operator rejected this call to {name}. Note: {row.decision_note or '(none)'}",
                None,
            )
        in_doubt = (ToolCallStatus.STARTED, ToolCallStatus.UNKNOWN)
        if row is not None and row.status in in_doubt and not row.idempotent:
            # In flight when a worker died (or already found so by an earlier resume that died
            # too): the outcome is unknown and the call is never made again.
            return self.unknown_outcome(row)
        if needs_approval and (row is None or row.status == ToolCallStatus.AWAITING_APPROVAL):
            self.ask_approval(row, call_id, tool, arguments, why=guarded.reason)
        self.calls_made[key] += 1
        row = row or self.start_row(call_id, tool, arguments)
        try:
            result = self.execute(row, tool, arguments)
        except Failure as failure:
            fallback_result: ToolResult | None = None
            if tool.fallback_id and tool.fallback and tool.fallback.enabled:
                fallback_result = self.try_fallback(row, tool, arguments, failure)
            if fallback_result is None:
                return (
                    f"Error: the tool {name} failed ({failure.failure_class.value}): "
                    f"{tracer.redact(str(failure))[:500]}. Try another approach or tell the user."
                ), None
            result = fallback_result
        return as_text(result.content), result.control  # through its result guardrails

    def agent_asked(
        self, call_id: str, name: str, entry: dict[str, Any], raw: str
    ) -> tuple[str, dict[str, Any] | None]:
        """Another agent as a tool: its child run's answer, or a wait for it (no worker held)."""
        driver = self.driver
        try:
            arguments = json_parse(raw, nul_ok=True) if raw.strip() else {}
        except ValueError:
            arguments = {}
        request = arguments.get("request") if isinstance(arguments, dict) else None
        if not isinstance(request, str) or not request.strip():
            return f"Error: give {name} a request: what to do, as text.", None
        # Keyed by step too: a provider that numbers its calls from 0 each step must not
        # find the last step's child.
        key = f"{driver.run.step}:{call_id}"[:100]
        if driver.session.fork_tools:
            replayed = self.fork_agent_guard(call_id, key, name, request)
            if replayed is not None:
                return replayed, None
        with driver.tracer.span(
            "agent.call", **{"gen_ai.tool.name": name, "agent.callee": entry["agent"]}
        ) as span:
            child = child_start(driver=driver, entry=entry, call_id=key, request=request)
            if isinstance(child, str):
                span.fail(FailureClass.TOOL_ERROR, child)
                return child, None
            span.set(**{"agent.child_run": str(child.pk)})
            answered = child_answer(child)
            if answered is None:
                driver.run.state = {"child": str(child.pk)}  # what its wake must match
                raise WaitRequired(None, f"waiting for agent {entry['agent']}", child_run=child)
        text, _ = answered
        tokens_in, tokens_out = chain_tokens(child)
        return text, {"rollup": {"tokens_in": tokens_in, "tokens_out": tokens_out}}

    def transfer_asked(
        self, name: str, entry: dict[str, Any], raw: str
    ) -> tuple[str, dict[str, Any] | None]:
        """A transfer tool: the target takes the conversation, or the model reads why not."""
        try:
            arguments = json_parse(raw, nul_ok=True) if raw.strip() else {}
        except ValueError:
            arguments = {}
        reason = arguments.get("reason") if isinstance(arguments, dict) else None
        reason = reason[:500] if isinstance(reason, str) else ""
        target, refusal = transfer_refusal(driver=self.driver, entry=entry)
        if target is None:
            self.driver.tracer.event(
                "tool.rejected",
                status="error",
                error_class=FailureClass.INVALID_REQUEST,
                error_message=refusal,
                **{"gen_ai.tool.name": name},
            )
            return refusal, None
        return (
            f"Transferred to {target.name}: the conversation is theirs from here.",
            {"transfer": {"target": target, "reason": reason}},
        )

    def result_guarded(self, name: str, text: str) -> str:
        """A tool's result through its result guardrails, before anything keeps it or the
        model reads it: redacted, or withheld."""
        checked = self.driver.guards.check_result(name, text)
        if checked.stopped_by is not None:
            self.driver.tracer.forget([text])  # out of the call's span too
            return (
                f"Error: the result of {name} was withheld by the guardrail "
                f"{checked.stopped_by['name']} ({checked.reason})."
            )
        return checked.text

    # -- forks ---------------------------------------------------------------------------
    def fork_guard(self, call_id: str, tool: ToolDefinition, arguments: object) -> str | None:
        """A call after the fork point of a forked session. Idempotent tools run (repeating a
        read is safe, and the fork sees today's answers). A non-idempotent one runs only if
        forking allowed it; else the origin run's recording of the same call answers it, or
        it is refused with a message the model reads. None: go on and execute it."""
        driver = self.driver
        event: dict[str, Any] = {"gen_ai.tool.name": tool.name, "fork.idempotent": tool.idempotent}
        if tool.idempotent or driver.session.fork_tools == ForkTools.ALLOW:
            driver.tracer.event("tool.fork", **event, **{"fork.outcome": ForkOutcome.EXECUTED})
            return None
        # Stored with the step's checkpoint, with the tool message: a crash before it decides
        # again, alike.
        recording = self.fork_recording(tool.name, arguments)
        if recording is not None:
            outcome, status, text = ForkOutcome.REPLAYED, ToolCallStatus.SUCCEEDED, recording.result
            event["fork.recorded_call_id"] = recording.pk
        else:
            outcome, status = ForkOutcome.REFUSED, ToolCallStatus.REJECTED
            text = (
                f"Not executed in a fork: {tool.name} changes things outside this conversation "
                "(it is not idempotent), this fork was made without allowing such calls, and "
                f"the original run has no recorded call of {tool.name} with these arguments to "
                "answer it from. Go on without it, or tell the user it was not done."
            )
        driver.tracer.event("tool.fork", **event, **{"fork.outcome": outcome})
        self.deferred.append(
            ToolCall(
                run_id=driver.run.pk,
                step=driver.run.step + 1,
                call_id=call_id,
                tool_name=tool.name,
                tool_version=tool.version,
                arguments=arguments,
                status=status,
                idempotent=False,
                result=text,
                fork_outcome=outcome,
                started_at=timezone.now(),
                finished_at=timezone.now(),
            )
        )
        return text

    def fork_recording(self, tool_name: str, arguments: object) -> ToolCall | None:
        """The origin run's recorded result for this call, if one is left: the n-th call of a
        tool with the same arguments gets the n-th recording (the calls copied from before the
        fork point used theirs), so a change made once is never reported done twice."""
        origin = self.driver.run.forked_from_id
        if origin is None:  # a later turn of the fork: no recording is of it
            return None
        key = canonical(arguments)

        def same(calls: Iterable[ToolCall]) -> list[ToolCall]:
            return [c for c in calls if canonical(c.arguments) == key]

        recorded = same(
            ToolCall.objects.filter(
                run_id=origin, tool_name=tool_name, status=ToolCallStatus.SUCCEEDED
            ).order_by("step", "started_at", "pk")
        )
        used = same(
            ToolCall.objects.filter(
                run_id=self.driver.run.pk,
                tool_name=tool_name,
                status=ToolCallStatus.SUCCEEDED,
                fork_outcome__in=[ForkOutcome.COPIED, ForkOutcome.EDITED, ForkOutcome.REPLAYED],
            )
        )
        return recorded[len(used)] if len(used) < len(recorded) else None

    def fork_agent_guard(self, call_id: str, key: str, name: str, request: str) -> str | None:
        """An agent call after the fork point of a forked session. Under `replay` the origin
        run's recording of the same call answers it (the n-th call with that request takes
        the n-th recording: the answer its model read, its child's or the error it was told)
        and no child run is started. Without a recording, or under `allow`, the agent is
        asked: its child session keeps the fork's policy, so the child's own non-idempotent
        calls are in turn executed (`allow`) or refused (`replay`: nothing recorded them).
        None: ask the agent."""
        driver = self.driver
        if driver.run.jobs_started > 1 and (
            Run.objects.filter(parent_run_id=driver.run.pk, parent_call_id=key).exists()
        ):
            return None  # decided by an earlier job of this run: the child it asked answers
        event: dict[str, Any] = {"gen_ai.tool.name": name, "fork.idempotent": False}
        recording: AgentCallRecording | None = None
        if driver.session.fork_tools == ForkTools.REPLAY:
            recording = self.fork_agent_recording(name, request)
        if recording is None:
            driver.tracer.event("tool.fork", **event, **{"fork.outcome": ForkOutcome.EXECUTED})
            return None
        if recording.child_run_id is not None:
            event["fork.recorded_child_run"] = str(recording.child_run_id)
        driver.tracer.event("tool.fork", **event, **{"fork.outcome": ForkOutcome.REPLAYED})
        self.deferred.append(  # stored with the step's checkpoint, with the tool message
            ToolCall(
                run_id=driver.run.pk,
                step=driver.run.step + 1,
                call_id=call_id,
                tool_name=name,
                arguments={"request": request},
                status=ToolCallStatus.SUCCEEDED,
                idempotent=False,
                result=recording.answer,
                fork_outcome=ForkOutcome.REPLAYED,
                started_at=timezone.now(),
                finished_at=timezone.now(),
            )
        )
        return recording.answer

    def fork_agent_recording(self, name: str, request: str) -> AgentCallRecording | None:
        """The origin run's recorded answer to this agent call, if one is left: as for tools,
        the n-th call with the same request gets the n-th recording, those answered before
        the fork point (copied) counting as used."""
        run = self.driver.run
        if run.forked_from_id is None:  # a later turn of the fork: no recording is of it
            return None
        recorded = [
            r
            for r in agent_call_recordings(run_id=run.forked_from_id, tool=name)
            if r.request == request
        ]
        copied = sum(
            1 for r in recorded if run.forked_at_step is not None and r.step <= run.forked_at_step
        )
        replayed = ToolCall.objects.filter(
            run_id=run.pk,
            tool_name=name,
            status=ToolCallStatus.SUCCEEDED,
            fork_outcome=ForkOutcome.REPLAYED,
            arguments__request=request,
        ).count()
        used = copied + replayed
        return recorded[used] if used < len(recorded) else None

    def existing_row(self, call_id: str) -> ToolCall | None:
        """The record an earlier job of this run left for the call, if any."""
        if self.driver.run.jobs_started <= 1:
            return None  # the run's first job: no earlier job can have left one
        return ToolCall.objects.filter(
            run_id=self.driver.run.pk, step=self.driver.run.step + 1, call_id=call_id
        ).first()

    def start_row(self, call_id: str, tool: ToolDefinition, arguments: object) -> ToolCall:
        """A non-idempotent call is committed as `started` before it runs, so a crash can never
        repeat it. An idempotent one is written with the step's checkpoint: if a crash comes
        first, running it again is safe."""
        # In a fork, what gets here runs (tool.fork says why).
        outcome = ForkOutcome.EXECUTED if self.driver.session.fork_tools else ""
        if not tool.idempotent:
            return self.mark(
                None, call_id, tool, arguments, ToolCallStatus.STARTED, fork_outcome=outcome
            )
        return ToolCall(
            run_id=self.driver.run.pk,
            step=self.driver.run.step + 1,
            call_id=call_id,
            tool_name=tool.name,
            tool_version=tool.version,
            arguments=arguments,
            status=ToolCallStatus.STARTED,
            idempotent=True,
            fork_outcome=outcome,
            started_at=timezone.now(),  # stored later, with the step: not the time of the insert
        )

    def mark(
        self,
        row: ToolCall | None,
        call_id: str,
        tool: ToolDefinition,
        arguments: object,
        status: str,
        **fields: Any,
    ) -> ToolCall:
        """Commit the call's state before acting on it, fenced like every checkpoint."""
        driver = self.driver
        with transaction.atomic():
            fenced_update(run_id=driver.run.pk, epoch=driver.epoch)
            if row is None:
                row = ToolCall.objects.create(
                    run_id=driver.run.pk,
                    step=driver.run.step + 1,
                    call_id=call_id,
                    tool_name=tool.name,
                    tool_version=tool.version,
                    arguments=arguments,
                    status=status,
                    idempotent=tool.idempotent,
                    **fields,
                )
            else:
                for key, value in {"status": status, **fields}.items():
                    setattr(row, key, value)
                if not row.pk:
                    row.save()
                else:
                    row.save(update_fields=["status", *fields.keys()])
        return row

    def ask_approval(
        self,
        row: ToolCall | None,
        call_id: str,
        tool: ToolDefinition,
        arguments: object,
        *,
        why: str = "",
    ) -> None:
        driver = self.driver
        if row is None:
            row = self.mark(None, call_id, tool, arguments, ToolCallStatus.AWAITING_APPROVAL)
            event_record(
                kind="approval.requested",
                run=driver.run,
                data={
                    "tool_call_id": row.pk,
                    "tool": tool.name,
                    "agent": driver.agent.slug,
                    **({"why": why} if why else {}),
                },
                detail={"arguments": driver.tracer.redact(arguments)},  # not for the pages
                viewers=True,
            )
        raise WaitRequired(None, f"approval needed for {tool.name}", approval_call=row.pk)

    def unknown_outcome(self, row: ToolCall) -> tuple[str, dict[str, Any] | None]:
        """A non-idempotent call was in flight when its worker died. A tool that honours an
        idempotency key gets it again, with the same key: its service answers a call it
        already made with its first answer, so nothing happens twice. Any other is never
        repeated: a person checks. A keyed call is re-sent at most MAX_KEYED_RESENDS times
        (each re-send is a `tool.resend` event, stored before it is sent): a call whose every
        send dies with its worker (a service that crashes the process, a payload that runs it
        out of memory) is then handed off too, rather than sent for ever."""
        tool = self.get(row.tool_name)
        arguments = row.arguments
        keyed = tool is not None and tool.honours_idempotency_key
        resent = self.resends_made(row) if keyed else 0
        if (
            tool is not None
            and keyed
            and row.status == ToolCallStatus.STARTED
            and isinstance(arguments, dict)
            and resent < MAX_KEYED_RESENDS
        ):
            driver = self.driver
            driver.tracer.event(
                "tool.resend",
                reason="outcome unknown: the worker stopped while the call ran",
                attempts_before=row.attempts,
                resend=resent + 1,
                idempotency_key=row.idempotency_key,
                **{"gen_ai.tool.name": tool.name, "gen_ai.tool.call.id": row.call_id},
            )
            with transaction.atomic():  # counted before it is sent: a death in it counts
                fenced_update(run_id=driver.run.pk, epoch=driver.epoch)
                driver.tracer.flush()
            try:
                result = self.execute(row, tool, arguments)
            except Failure as failure:
                return (
                    f"Error: the tool {tool.name} failed ({failure.failure_class.value}): "
                    f"{self.driver.tracer.redact(str(failure))[:500]}. "
                    "Try another approach or tell the user."
                ), None
            return as_text(result.content), result.control
        self.mark(
            row,
            row.call_id,
            tool or ToolDefinition(name=row.tool_name),
            row.arguments,
            ToolCallStatus.UNKNOWN,
            finished_at=timezone.now(),
        )
        if resent:
            return (
                f"Error: the outcome of {row.tool_name} is unknown: the worker stopped while it "
                f"ran, every time it was sent ({resent} re-sends with the same idempotency key). "
                "It was not sent again. A human will check.",
                {
                    "handoff": {
                        "reason": f"tool outcome unknown: {row.tool_name} (call {row.call_id}) "
                        f"after {resent} re-sends",
                        "failure_class": FailureClass.TOOL_ERROR,
                    }
                },
            )
        return (
            f"Error: the outcome of {row.tool_name} is unknown (the worker stopped while it ran); "
            "it was not repeated. A human will check.",
            {
                "handoff": {
                    "reason": f"tool outcome unknown: {row.tool_name} (call {row.call_id})",
                    "failure_class": FailureClass.TOOL_ERROR,
                }
            },
        )

    def resends_made(self, row: ToolCall) -> int:
        """How many times the call was re-sent after its outcome was unknown (its stored
        `tool.resend` events: one is stored before each re-send)."""
        return Span.objects.filter(
            trace_id=self.driver.run.pk,
            name="tool.resend",
            attributes__idempotency_key=row.idempotency_key,
        ).count()

    def execute(self, row: ToolCall, tool: ToolDefinition, arguments: dict[str, Any]) -> ToolResult:
        """The retry owner for tool calls, under the tool's own policy. Each attempt is a span."""
        driver = self.driver
        policy = RetryPolicy(
            tool.retry_max_attempts, tool.retry_base_seconds, tool.retry_cap_seconds
        )
        context = ToolContext(
            call_id=row.call_id,
            run_id=driver.run.pk,
            step=row.step,
            agent_id=driver.agent.pk,
            agent_slug=driver.agent.slug,
            session_id=driver.session.pk,
            user_key=driver.session.memory_scope,
            tracer=driver.tracer,
        )
        broadcast(
            session_group(driver.session.pk),
            {
                "kind": "tool.call",
                "run_id": str(driver.run.pk),
                "call_id": row.call_id,
                "tool": tool.name,
                "arguments": driver.tracer.redact(arguments),
            },
        )

        def attempt_once(attempt: int) -> ToolResult:
            if tool.idempotent:
                row.status, row.attempts = ToolCallStatus.STARTED, attempt
            else:
                self.mark(
                    row, row.call_id, tool, arguments, ToolCallStatus.STARTED, attempts=attempt
                )
            with driver.tracer.span(
                "tool.call",
                **{
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool.name,
                    "gen_ai.tool.call.id": row.call_id,
                    "gen_ai.tool.call.arguments": arguments,
                    "tool.kind": tool.kind,
                    "tool.version": tool.version,
                    "attempt": attempt,
                    "idempotency_key": row.idempotency_key,
                },
            ) as span:
                connection_release()  # a slow tool holds no pooled connection either
                try:
                    result = tool_execute(tool=tool, arguments=arguments, context=context)
                except Failure:
                    raise
                except Exception as exc:
                    raise Failure(
                        FailureClass.BUG, f"{type(exc).__name__} in the tool executor: {exc}"
                    ) from exc
                span.set(**{"gen_ai.tool.call.result": result.content})
            return result

        try:
            # A call that may have reached the server is repeated only if the tool is idempotent
            # or honours the idempotency key (each attempt carries the same one).
            repeatable = tool.idempotent or tool.honours_idempotency_key
            result = retry_call(
                attempt_once,
                policy=policy,
                tracer=driver.tracer,
                what=f"tool {tool.name}",
                attempts_made=row.attempts,
                retryable=lambda failure: (
                    failure.transient and (repeatable or not failure.may_have_reached_server)
                ),
            )
        except Failure as failure:
            self.mark(
                row,
                row.call_id,
                tool,
                arguments,
                ToolCallStatus.FAILED,
                finished_at=timezone.now(),
                error_class=failure.failure_class.value,
                result=driver.tracer.redact(str(failure))[:4000],
            )
            raise
        finished_at = timezone.now()
        # Checked before the row keeps it: a resume after a crash reads the row.
        result.content = self.result_guarded(tool.name, as_text(result.content))
        output = driver.tracer.redact(result.content)[:20000]
        if tool.idempotent:
            row.status, row.finished_at, row.result = (
                ToolCallStatus.SUCCEEDED,
                finished_at,
                output,
            )
            self.deferred.append(row)
        else:
            self.mark(
                row,
                row.call_id,
                tool,
                arguments,
                ToolCallStatus.SUCCEEDED,
                finished_at=finished_at,
                result=output,
            )
        return result

    def try_fallback(
        self, row: ToolCall, tool: ToolDefinition, arguments: dict[str, Any], failure: Failure
    ) -> ToolResult | None:
        fallback = tool.fallback
        assert fallback is not None
        tracer = self.driver.tracer
        tracer.event(
            "fallback",
            reason=failure.failure_class.value,
            **{"gen_ai.tool.name": tool.name},
            to_tool=fallback.name,
        )
        if arguments_errors(fallback, arguments):
            tracer.event(
                "fallback.skipped",
                reason="arguments do not fit the fallback tool's schema",
                to_tool=fallback.name,
            )
            return None
        fallback_row = self.start_row(f"{row.call_id}~fallback"[:100], fallback, arguments)
        try:
            return self.execute(fallback_row, fallback, arguments)
        except Failure:
            return None
