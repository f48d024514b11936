"""The agent loop: context → model → tool calls → results → model … until an answer,
a handoff, a wait or a limit. One RQ job drives one run; every step is checkpointed
before the next starts, so a run whose worker died resumes where it stopped.

Nothing here knows about HTTP or templates.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.db import (
    DatabaseError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import JSONField
from django.db.models.expressions import RawSQL
from django.utils import timezone

from agentops.agent_config import agent_config_for_run
from agentops.budgets.services import HOLDS_OF_RUN, RunSpend
from agentops.models import (
    Agent,
    Message,
    ModelEndpoint,
    Role,
    Run,
    RunStatus,
    ToolCall,
    ToolCallStatus,
)
from agentops.people.selectors import team_get
from agentops.runtime.agent_calls import (
    agent_tool_specs,
    answers_a_caller,
    child_answer,
    runs_below,
)
from agentops.runtime.breaker import BreakerOpen
from agentops.runtime.checkpoint import (
    fenced_update,
    heartbeat,
    run_claim,
    status_broadcast,
    step_commit,
)
from agentops.runtime.context import (
    SUMMARY_PROMPT,
    ContextParts,
    Transcript,
    context_assemble,
    count_tokens,
    message_tokens,
    to_openai,
    transcript_load,
)
from agentops.runtime.errors import HandoffRequired, LeaseLost, WaitRequired
from agentops.runtime.guards import ParallelCheck, RunGuards, stop_record
from agentops.runtime.model_client import (
    ModelReply,
    RetryNotice,
    model_call_guarded,
    tool_specs,
)
from agentops.runtime.retry import INLINE_WAIT_MAX, RetryPolicy
from agentops.runtime.services import (
    handoff_open,
    run_enqueue,
    run_held_requeue,
    run_released,
)
from agentops.runtime.tooling import ToolRunner
from agentops.runtime.transfers import (
    TransferRequired,
    TransferTakenOver,
    route_classify,
    route_pick,
    transfer_entry,
    transfer_perform,
    transfer_refusal,
    transfer_specs,
    transfer_unfinished,
    transferred_view,
)
from tracing import semconv
from tracing.emit import Tracer
from tracing.models import Span
from tracing.platform.failures import Failure, FailureClass
from tracing.platform.live import send_now, session_group, wait_sent
from tracing.platform.logs import bind_context, get_logger
from tracing.rollups import PriceBook

log = get_logger(__name__)

HEARTBEAT_SECONDS = 2.0
# How old a run's view of an endpoint's shared circuit breaker may get before a call reads
# it again: other workers' failures reach a long run within this, and a short run reads none.
BREAKER_READ_EVERY = 1.0


class Heartbeat(threading.Thread):
    """Refreshes the run's heartbeat; notices when the run was taken over or cancelled."""

    def __init__(self, run_id: uuid.UUID, epoch: int) -> None:
        super().__init__(name=f"heartbeat-{run_id}", daemon=True)
        self.run_id = run_id
        self.epoch = epoch
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(HEARTBEAT_SECONDS):
                try:
                    if not heartbeat(run_id=self.run_id, epoch=self.epoch):
                        self.lost.set()
                        return
                except DatabaseError:
                    close_old_connections()
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopped.set()


class RunBeat(Protocol):
    """What a run needs of its heartbeat: `lost` is set once the run was taken over or cancelled."""

    lost: threading.Event

    def stop(self) -> None: ...


def heartbeat_thread(run_id: uuid.UUID, epoch: int) -> RunBeat:
    beat = Heartbeat(run_id, epoch)
    beat.start()
    return beat


# How a run's heartbeat starts: a thread of its own, or, in a worker that drives many runs in
# one process (agentops.worker.ConcurrentWorker), a place in that process's one heartbeat.
heartbeat_start: Callable[[uuid.UUID, int], RunBeat] = heartbeat_thread


@functools.lru_cache(maxsize=256)
def specs_tokens(text: str) -> int:
    """Tool definitions' token cost: the same few lists come back run after run, and counting
    one costs more than the rest of a run's setup."""
    return count_tokens(text)


def not_run_answers(pending: list[dict[str, Any]], text: str) -> list[Message]:
    """The results of tool calls that will never run: `text`, each."""
    return [
        Message(
            role=Role.TOOL,
            tool_call_id=str(call.get("id") or ""),
            name=str((call.get("function") or {}).get("name") or "")[:100],
            content=text,
            token_count=message_tokens(content=text),
        )
        for call in pending
    ]


def takeover_name(user_id: int | None) -> str:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    return user.get_username() if user is not None else "an operator"


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_execute(*, run_id: uuid.UUID | str, job_id: str = "") -> str:
    """Drive a run from its last checkpoint, then the runs its turn is transferred to (each
    claimed for this job by its transfer: the next agent answers without a queue between).
    Returns the status the last of them ended this job in. Each run is released when the job
    is done with it (`run_released`), also one it could not claim."""
    close_old_connections()
    try:
        epoch = run_claim(run_id=run_id, worker=worker_name(), job_id=job_id)
    except BaseException:
        run_released(run_id=run_id)
        raise
    if epoch is None:
        run_released(run_id=run_id)
        return "not-claimed"
    job_started = time.monotonic()
    successor: Run | None = None
    while True:
        sandbox: bool | None = None
        try:
            run, successor = run_drive_claimed(run_id=run_id, epoch=epoch, run=successor)
            sandbox = run.session.sandbox
        finally:
            run_released(run_id=run_id, sandbox=sandbox)
        if successor is None or successor.status != RunStatus.RUNNING:
            return run.status  # no transfer, or its target's run waits for a slot
        if time.monotonic() - job_started > settings.RUN_JOB_TIMEOUT / 2:
            run_held_requeue(run=successor)  # a job of its own, with a whole time limit
            return run.status
        if not heartbeat(run_id=successor.pk, epoch=successor.epoch):
            return run.status  # cancelled, or recovered by the sweep, since its transfer
        run_id, epoch = successor.pk, successor.epoch


def run_drive_claimed(
    *, run_id: uuid.UUID | str, epoch: int, run: Run | None = None
) -> tuple[Run, Run | None]:
    """Drive a run this job holds at `epoch` (`run`: as its transfer made it, with what its
    driver reads; else read here): the run as it ended, and the run its turn was transferred
    to, if it was (held by this job too)."""
    if run is None or getattr(run, "budget_holds", None) is None:
        run = (
            Run.objects.select_related("agent__endpoint", "session", "agent_version", "trigger")
            .annotate(budget_holds=RawSQL(HOLDS_OF_RUN, [], output_field=JSONField()))  # noqa: S611 - a constant
            .get(pk=run_id)
        )
    beat = heartbeat_start(run.pk, epoch)
    successor = None
    try:
        driver = RunDriver(run, epoch, beat)
    except BaseException:
        beat.stop()
        raise
    with bind_context(
        trace_id=str(run.pk),
        run_id=str(run.pk),
        session_id=str(run.session_id),
        agent=run.agent.slug,
    ):
        try:
            driver.start()
            driver.drive()
        except LeaseLost:
            log.warning("run.lease_lost", epoch=epoch)
        except WaitRequired as wait:
            driver.wait(wait)
        except TransferRequired as transfer:
            successor = driver.transfer(transfer)
        except HandoffRequired as handoff:
            driver.hand_off(
                handoff.reason,
                team=handoff.team,
                priority=handoff.priority,
                failure_class=handoff.failure_class,
            )
        except Failure as failure:
            if failure.transient or isinstance(failure, BreakerOpen):  # the model is unavailable
                driver.hand_off(
                    f"model unavailable after retries and fallbacks: "
                    f"{failure.failure_class.value}: {driver.tracer.redact(str(failure))[:300]}",
                    failure_class=failure.failure_class,
                )
            else:
                driver.fail(failure)
        except (OperationalError, InterfaceError):
            # Postgres went away: nothing more can be stored. The run stays `running` without a
            # heartbeat, so the scheduler re-enqueues it and it resumes from its last checkpoint.
            log.exception("run.database_unavailable")
        except Exception as exc:
            driver.fail(exc)
        finally:
            beat.stop()
            driver.spend_settle()
            try:
                driver.tracer.flush_now()
            except Exception:
                log.exception("run.trace_flush_failed")
            wait_sent()
    if run.status == RunStatus.RUNNING:  # ended otherwise than by its driver (a lost lease)
        run.refresh_from_db(fields=["status"])
    return run, successor


class RunDriver:
    def __init__(self, run: Run, epoch: int, beat: RunBeat) -> None:
        self.run = run
        self.agent: Agent = run.agent
        self.config = agent_config_for_run(run)
        self.session = run.session
        self.epoch = epoch
        self.beat = beat
        self.candidates = self.config.candidates
        # Breaker states came with the run; they are read again once older than BREAKER_READ_EVERY.
        self.breakers_read_at = dict.fromkeys((e.pk for e, _ in self.candidates), time.monotonic())
        self.tracer = Tracer(
            run.pk,
            session_id=run.session_id,
            agent=self.agent.slug,
            secrets_to_redact=[endpoint.api_key for endpoint, _ in self.candidates],
            sandbox=self.session.sandbox,
            # A run its transfer just made, in its first job: nothing wrote to its trace yet.
            new_trace=run.jobs_started == 1 and "transfer" in (run.state or {}),
        )
        self.policy = RetryPolicy(
            self.config.retry_max_attempts,
            self.config.retry_base_seconds,
            self.config.retry_cap_seconds,
        )
        self.transcript = Transcript()
        self.parts = ContextParts(self.config.system_prompt, [], "", {}, [])
        self.tools = ToolRunner(self)
        self.guards = RunGuards(self)
        self.parallel_check: ParallelCheck | None = None
        self.budget = self.config.context_token_budget
        self.in_place = False
        self._specs: tuple[list[dict[str, Any]], int] | None = None
        # Who asked to take the conversation over (a user id), as the last checkpoint read it.
        self.takeover_by: int | None = run.takeover_by_id
        # What the run's model calls cost (priced only when a limit or a budget needs it),
        # and its reservations against budgets (agentops.budgets), if it holds any.
        holds = getattr(run, "budget_holds", None)  # read with the run (run_execute)
        self.spend = RunSpend(run_id=run.pk, holds=holds) if holds else None
        self.prices: PriceBook | None = None
        self.cost = Decimal(0)
        self.cost_counted = False

    # -- lifecycle -----------------------------------------------------------------------
    def check_alive(self) -> None:
        if self.beat.lost.is_set():
            raise LeaseLost("heartbeat lost")

    def start(self) -> None:
        self.tracer.event(
            "run.status",
            status=RunStatus.RUNNING,
            epoch=self.epoch,
            step=self.run.step,
            resumed=self.run.step > 0,
            agent_version=self.config.version_number,
        )
        if self.config.problem:
            raise Failure(FailureClass.INVALID_REQUEST, self.config.problem)
        self.run.status = RunStatus.RUNNING
        status_broadcast(self.run)
        trigger = self.run.trigger  # loaded with the run
        trigger_seq = trigger.seq if trigger is not None else None
        # Retried after newer turns: the run answers its own message, seeing the conversation
        # as it stood then (and what the run did so far); its folds stay its own. (Nothing
        # to look for when the session, read with the run, ends at the trigger.)
        self.in_place = False
        # (The session of a run its transfer made came with the transfer: its last_seq is old.)
        if trigger_seq is not None and (
            self.session.last_seq > trigger_seq or self.run.transferred_from_id
        ):
            later = Message.objects.filter(session_id=self.session.pk, seq__gt=trigger_seq)
            if self.run.transferred_from_id:  # the turn's earlier agents wrote after it
                later = later.filter(role=Role.USER)
            self.in_place = later.exclude(run_id=self.run.pk).exists()
        self.transcript = transcript_load(
            session_id=self.session.pk,
            after_seq=self.session.summary_upto_seq,
            upto_seq=trigger_seq if self.in_place else None,
            run_id=self.run.pk,
        )
        self.parts.summary = self.session.summary
        self.parts.notes = dict(self.session.scratchpad or {})
        if self.run.transferred_from_id:
            self.transferred_view()
        if self.config.guardrails:
            self.guards.stop_again()  # a stop decided before a crash stands
            self.guards.check_input()  # before its text goes anywhere (memory recall too)
        if self.config.transfers and not self.run.transferred_from_id:
            self.route(trigger)
        if self.config.transfers and (target := transfer_unfinished(driver=self)) is not None:
            raise TransferRequired(target, "resumed after the worker stopped mid-transfer")
        if self.config.memory_enabled:
            self.recall_memories()

    def route(self, trigger: Message | None) -> None:
        """A session's first message, before any model call: a transfer whose routing rules
        match takes the conversation at once; else, if transfers ask for it, a classifier
        call chooses one of them (or none: this agent answers)."""
        first = (
            trigger is not None
            and self.run.model_calls == 0
            and not any(m.role == Role.ASSISTANT for m in self.transcript.messages)
        )
        if not first:
            return
        assert trigger is not None
        text = next((m.content for m in self.transcript.messages if m.pk == trigger.pk), "")
        pick = route_pick(
            transfers=self.config.transfers, text=text, end_user=self.session.external_user
        )
        entry = pick.entry
        how = f"routed by rule: {entry['when']}" if entry is not None else ""
        if entry is None and pick.candidates:
            verdict = route_classify(driver=self, candidates=pick.candidates, text=text)
            entry = next((c for c in pick.candidates if c["agent"] == verdict.agent), None)
            how = f"routed by classifier: {verdict.reason}"
        if entry is None:
            return
        target, refusal = transfer_refusal(driver=self, entry=entry)
        if target is None:
            self.tracer.event("route.refused", agent=entry["agent"], reason=refusal[:300])
            return
        raise TransferRequired(target, how[:500])

    def transferred_view(self) -> None:
        """A run the conversation was transferred to sees what its transfer says: all of it,
        a summary of what came before the turn, or the last N turns."""
        entry = (self.run.state or {}).get("transfer")  # written by the transfer
        if entry is None:  # its state since replaced (a wait): as the source's version says
            source_id = self.run.transferred_from_id
            assert source_id is not None
            source = Run.objects.select_related("agent", "agent_version").get(pk=source_id)
            entry = transfer_entry(
                transfers=agent_config_for_run(source).transfers,
                tool=f"transfer_to_{self.agent.slug}"[:64],
            ) or {"history": "all"}
        older, seen = transferred_view(
            messages=self.transcript.messages,
            trigger_id=self.run.trigger_id,
            history=entry.get("history", "all"),
            turns=entry.get("turns", 3),
        )
        self.transcript.messages = seen
        if older:
            self.transcript.messages = older + seen
            self.fold_into_summary(older, persist=False)  # this run's view, not the session's

    def recall_memories(self) -> None:
        from memory.selectors import memory_pinned
        from memory.services import memory_recall

        query = next(
            (m.content for m in reversed(self.transcript.messages) if m.role == Role.USER), ""
        )
        self.parts.pinned = [
            m.text
            for m in memory_pinned(
                agent_id=self.agent.pk,
                user_key=self.session.memory_scope,
                also_user_key=self.session.memory_also_reads,
            )
        ]
        if query and self.config.recall_k:
            recalled = memory_recall(
                agent_id=self.agent.pk,
                user_key=self.session.memory_scope,
                also_user_key=self.session.memory_also_reads,
                query=query,
                k=self.config.recall_k,
                run_id=self.run.pk,
                tracer=self.tracer,
            )
            pinned = set(self.parts.pinned)
            self.parts.recalled = [r.text for r in recalled if r.text not in pinned]

    def drive(self) -> None:
        while True:
            self.check_alive()
            pending = self.pending_tool_calls()
            if self.takeover_by is not None:
                self.stop_for_takeover(pending)
            if pending:
                allowed = self.tool_calls_allowed(len(pending))
                reached = self.run_limit_reached() or (
                    None if allowed else self.tool_calls_limit_text()
                )
                if reached:
                    self.stop_at_limit(reached, pending)
                for call in pending[:allowed]:
                    self.tools.run_call(call)
                continue
            last = self.transcript.messages[-1] if self.transcript.messages else None
            if last is not None and last.role == Role.ASSISTANT and last.run_id == self.run.pk:
                self.finish()
                return
            if self.run.model_calls >= self.config.max_steps:
                raise HandoffRequired(
                    f"max_steps reached ({self.config.max_steps} model calls)",
                    failure_class=FailureClass.LIMIT,
                )
            reached = self.run_limit_reached()
            if reached:
                self.stop_at_limit(reached, [])
            self.model_step()

    # -- per-run limits (Agent.run_max_*) --------------------------------------------------
    def tool_calls_made(self, pending: int) -> int:
        """Tool calls this run ran (or answered) so far: those its model asked for, less the
        `pending` ones."""
        asked = sum(
            len(m.tool_calls or [])
            for m in self.transcript.messages
            if m.role == Role.ASSISTANT and m.run_id == self.run.pk
        )
        return asked - pending

    def tool_calls_allowed(self, pending: int) -> int:
        """How many of the `pending` calls may run under the run's limit on tool calls."""
        limit = self.config.run_max_tool_calls
        if limit is None:
            return pending
        return max(0, min(pending, limit - self.tool_calls_made(pending)))

    def tool_calls_limit_text(self) -> str:
        return f"max tool calls per run reached ({self.config.run_max_tool_calls} tool calls)"

    def run_limit_reached(self) -> str | None:
        """Why the run may not take another step: its wall time, tokens or cost reached the
        agent version's limit (None: it may)."""
        config = self.config
        if config.run_max_seconds is not None and self.run.started_at is not None:
            elapsed = (timezone.now() - self.run.started_at).total_seconds()
            if elapsed >= config.run_max_seconds:
                return (
                    f"max wall time per run reached ({elapsed:.1f} s of "
                    f"{config.run_max_seconds:g} s)"
                )
        if config.run_max_tokens is not None:
            tokens = self.run.tokens_in + self.run.tokens_out
            if tokens >= config.run_max_tokens:
                return f"max tokens per run reached ({tokens} of {config.run_max_tokens} tokens)"
        if config.run_max_cost is not None:
            cost = self.cost_so_far()
            if cost >= Decimal(str(config.run_max_cost)):
                return (
                    f"max cost per run reached (${cost:.6f} of ${config.run_max_cost:g}, "
                    f"estimated from the price table)"
                )
        return None

    def stop_at_limit(self, reason: str, pending: list[dict[str, Any]]) -> None:
        """Stop the run at a per-run limit, as at max_steps: handed off with the LIMIT class.
        Calls the model asked for but that will not run are answered "not run", so the
        conversation stays whole for whoever goes on with it."""
        self.tracer.event("run.limit", reason=reason, **{"error.type": FailureClass.LIMIT})
        self.answer_not_run(pending, f"Not run: {reason}.")
        raise HandoffRequired(reason, failure_class=FailureClass.LIMIT)

    # -- spend (the per-run cost limit, budgets) -----------------------------------------
    def cost_so_far(self) -> Decimal:
        """What the run's model calls cost, from the price table: this job's calls, plus,
        on the first ask of a resumed run, those of its jobs before and of the agents it
        asked (from their traces: a caller reads a child's answer in a job of its own, which
        asks this first)."""
        if not self.cost_counted:
            self.cost_counted = True
            if self.run.step > 0:
                prices = self.price_book()
                traces = [self.run.pk]
                if self.config.agent_tools:
                    traces += runs_below(run_id=self.run.pk)
                for attributes in Span.objects.filter(
                    trace_id__in=traces, name=semconv.MODEL_CALL
                ).values_list("attributes", flat=True):
                    self.cost += prices.cost(
                        str(
                            attributes.get(semconv.RESPONSE_MODEL)
                            or attributes.get(semconv.REQUEST_MODEL)
                            or ""
                        ),
                        int(attributes.get(semconv.INPUT_TOKENS) or 0),
                        int(attributes.get(semconv.OUTPUT_TOKENS) or 0),
                    )
        return self.cost

    def price_book(self) -> PriceBook:
        if self.prices is None:
            self.prices = PriceBook()
        return self.prices

    def spend_record(self, reply: ModelReply) -> None:
        """A model call's tokens and cost, counted for the run's limits and its budgets."""
        wants_cost = self.config.run_max_cost is not None or (
            self.spend is not None and self.spend.wants_cost
        )
        cost = (
            self.price_book().cost(reply.model, reply.input_tokens, reply.output_tokens)
            if wants_cost
            else Decimal(0)
        )
        self.cost += cost
        if self.spend is not None:
            self.spend.add(tokens=reply.input_tokens + reply.output_tokens, cost=cost)

    def spend_settle(self) -> None:
        """The job ends: charge what the run spent to its budgets; if the run ended, release
        what it held. Postgres away: the scheduler's sweep releases it."""
        if self.spend is None:
            return
        try:
            if self.run.status in (RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.WAITING):
                self.spend.flush(now=True)
            else:
                self.spend.release()
        except DatabaseError:
            log.warning("run.budget_settle_deferred", exc_info=True)

    def pending_tool_calls(self) -> list[dict[str, Any]]:
        answered = set()
        for message in reversed(self.transcript.messages):
            if message.role == Role.TOOL:
                answered.add(message.tool_call_id)
                continue
            if (
                message.role == Role.ASSISTANT
                and message.tool_calls
                and message.run_id == self.run.pk
            ):
                return [c for c in message.tool_calls if c.get("id") not in answered]
            return []
        return []

    def answer_not_run(self, pending: list[dict[str, Any]], text: str) -> None:
        """Tool calls the model asked for that will never run get `text` as their result (in
        one step), so the conversation stays whole for whoever goes on with it."""
        if pending:
            self.checkpoint(messages=not_run_answers(pending, text))

    def stop_for_takeover(self, pending: list[dict[str, Any]]) -> None:
        """An operator takes the conversation over: the run stops here, between two steps.
        Tool calls the model asked for but that have not run are answered "not run" (so the
        conversation stays whole for the agent after a hand-back), and are never run."""
        name = takeover_name(self.takeover_by)
        self.answer_not_run(
            pending, f"Not run: {name}, a human operator, took the conversation over."
        )
        raise HandoffRequired(f"taken over by {name}")

    def takeover_operator(self) -> Any:
        """Inside a transaction: the operator who asked to take the conversation over, if
        any. The run's row stays locked until the transaction ends, so a takeover asked for
        meanwhile waits for it and then finds the run ended."""
        user_id = (
            Run.objects.select_for_update(of=("self",))
            .filter(pk=self.run.pk, epoch=self.epoch, status=RunStatus.RUNNING)
            .values_list("takeover_by_id", flat=True)
            .first()
        )
        if user_id is None:
            return None
        from django.contrib.auth import get_user_model

        return get_user_model().objects.filter(pk=user_id).first()

    # -- checkpoints ---------------------------------------------------------------------
    def checkpoint(
        self,
        *,
        messages: list[Message],
        records: list[ToolCall] | None = None,
        status: str | None = None,
        unless_taken_over: bool = False,
        **fields: Any,
    ) -> int | None:
        """Commit one step: new messages, run counters, trace records — all or nothing.
        `unless_taken_over` (a run's last step): nothing is stored if an operator asked to
        take the conversation over, whose id is returned."""
        self.run.step += 1
        fields["step"] = self.run.step
        if status:
            fields["status"] = status
            if status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.HANDED_OFF):
                fields["finished_at"] = timezone.now()
        for message in messages:
            message.run_id = self.run.pk
            message.step = self.run.step
            if message.role == Role.ASSISTANT:
                message.agent = self.agent
        with self.tracer.span("checkpoint", step=self.run.step, messages=len(messages)):
            operator_id = self.commit(
                fields,
                messages=messages,
                records=records or [],
                unless_taken_over=unless_taken_over,
            )
        if operator_id is not None:
            self.run.step -= 1
            return operator_id
        if self.spend is not None:  # the step's spend, charged to the run's budgets
            self.spend.flush()
        for key, value in fields.items():
            setattr(self.run, key, value)
        for message in messages:
            self.transcript.add(message)
        if status:
            status_broadcast(self.run)
        return None

    def commit(
        self,
        fields: dict[str, Any],
        *,
        messages: list[Message] | None = None,
        records: list[ToolCall] | None = None,
        unless_taken_over: bool = False,
    ) -> int | None:
        """One fenced statement: the run's fields, new messages, tool call records and the
        trace records buffered so far. With `unless_taken_over`, the id of the operator who
        asked to take the conversation over, if one did: then nothing was stored."""
        spans = self.tracer.take()
        takeover_by = step_commit(
            run_id=self.run.pk,
            epoch=self.epoch,
            session_id=self.session.pk,
            fields=fields,
            messages=messages or [],
            tool_calls=records or [],
            spans=spans,
            unless_taken_over=unless_taken_over,
        )
        if unless_taken_over and takeover_by is not None:
            self.tracer.restore(spans)
            return takeover_by
        self.takeover_by = takeover_by
        self.tracer.written(spans)
        return None

    def finish(self) -> None:
        """The run succeeded: one fenced statement, which stores nothing if an operator asked
        to take the conversation over (while the answer was written): then it is handed over."""
        self.tracer.event("run.status", status=RunStatus.SUCCEEDED)
        spans = self.tracer.take()
        operator_id = step_commit(
            run_id=self.run.pk,
            epoch=self.epoch,
            session_id=self.session.pk,
            fields={"status": RunStatus.SUCCEEDED, "finished_at": timezone.now(), "state": {}},
            messages=[],
            tool_calls=[],
            spans=spans,
            unless_taken_over=True,
        )
        if operator_id is not None:
            self.tracer.restore(spans[:-1])  # all but the success that did not happen
            self.takeover_by = operator_id
            raise HandoffRequired(f"taken over by {takeover_name(operator_id)}")
        self.tracer.written(spans)
        self.run.status = RunStatus.SUCCEEDED
        status_broadcast(self.run)

    # -- model steps ---------------------------------------------------------------------
    def model_step(self) -> None:
        specs, tools_tokens = self.tool_specs()
        with self.tracer.span("step", step=self.run.step + 1, kind="model") as step_span:
            messages = self.assemble(tools_tokens)
            self.parallel_check = self.guards.beside_first_call()
            try:
                reply = self.call_model(messages, specs)
            finally:
                beside, self.parallel_check = self.parallel_check, None
                checked = beside.finish() if beside is not None else None
            step_span.set(
                **{
                    "gen_ai.usage.input_tokens": reply.input_tokens,
                    "gen_ai.usage.output_tokens": reply.output_tokens,
                }
            )
        if checked is not None and checked.stopped_by is not None:
            self.guards.withhold(reply, checked)  # the input was refused: its answer is not used
            self.guards.stop_if_tripped(checked, "input")
        stopped = self.guards.check_output(reply)
        message = Message(
            role=Role.ASSISTANT,
            content=reply.content,
            tool_calls=reply.tool_calls,
            token_count=message_tokens(content=reply.content, tool_calls=reply.tool_calls),
        )
        handed_off = stopped is not None and stopped.action == "handoff"
        self.checkpoint(
            messages=[] if handed_off else [message],  # a withheld answer is not stored
            model_calls=self.run.model_calls + 1,
            tokens_in=self.run.tokens_in + reply.input_tokens,
            tokens_out=self.run.tokens_out + reply.output_tokens,
            model_used=reply.model[:200],
            state={"guardrail": stop_record(stopped, "output")} if stopped else {},
        )
        if stopped is not None:
            self.guards.stop_if_tripped(stopped, "output")

    def assemble(self, tools_tokens: int) -> list[dict[str, Any]]:
        """The context for the next model call. The current turn (the run's user message, the
        run's tool calls and results) always goes verbatim; older messages that do not fit
        are folded into the summary; a turn that does not fit even so fails the run with
        context_overflow rather than letting the model answer a question it was not shown."""
        keep_from = self.transcript.turn_start(trigger_id=self.run.trigger_id, run_id=self.run.pk)
        limit = self.config.context_token_budget

        def check(fixed: int) -> None:
            turn = sum(m.token_count for m in self.transcript.messages[keep_from:])
            if fixed + turn > limit:
                raise Failure(
                    FailureClass.CONTEXT_OVERFLOW,
                    f"The current turn (the user's message and this run's tool calls and "
                    f"results) needs {turn} tokens, but the context budget of {limit} tokens "
                    f"leaves {max(0, limit - fixed)} after the system prompt, memories, summary "
                    f"and tool definitions.",
                )

        check(self.parts.tokens() + tools_tokens)
        with self.tracer.span("context.assemble") as span:
            messages, used, older = context_assemble(
                parts=self.parts,
                transcript=self.transcript,
                budget=self.budget,
                tools_tokens=tools_tokens,
                keep_from=keep_from,
            )
            span.set(tokens=used, messages=len(messages), folded=len(older))
        if older:
            # Fold down to 60% of the budget, so the next turns fit without folding again.
            fixed = self.parts.tokens() + tools_tokens
            older, _ = self.transcript.window(
                max(0, int(self.budget * 0.6) - fixed), keep_from=keep_from
            )
            if older:
                self.fold_into_summary(older)
                keep_from -= len(older)
            check(self.parts.tokens() + tools_tokens)  # the summary grew
            messages, _, _ = context_assemble(
                parts=self.parts,
                transcript=self.transcript,
                budget=self.budget,
                tools_tokens=tools_tokens,
                keep_from=keep_from,
            )
        return messages

    def tool_specs(self) -> tuple[list[dict[str, Any]], int]:
        """The run's tools as the model sees them, and their token cost (fixed for a run)."""
        if self._specs is None:
            specs = (
                tool_specs(self.tools.available())
                + transfer_specs(self.config.transfers)
                + agent_tool_specs(self.config.agent_tools)
            )
            self._specs = (specs, specs_tokens(str(specs)) if specs else 0)
        return self._specs

    def call_model(
        self, messages: list[dict[str, Any]], specs: list[dict[str, Any]], *, purpose: str = "chat"
    ) -> ModelReply:
        """The run's model call through the one guarded call (model_client.model_call_guarded),
        with the run's own hooks: one auth refresh, one compaction, retries and fallbacks
        counted on the run, a long backoff or every breaker open waited out off the worker."""
        saved = (self.run.state or {}).get("model_retry") or {}
        resume = (0, 0)
        if purpose == "chat":
            resume = (saved.get("candidate", 0), saved.get("attempt", 0))
        refreshed = compacted = False

        def recover(failure: Failure, endpoint: ModelEndpoint) -> bool:
            """Try again at once, without backoff: a rotated key, a context that got too long."""
            nonlocal refreshed, compacted
            if failure.failure_class == FailureClass.AUTH and not refreshed:
                refreshed = True
                endpoint.refresh_from_db()
                self.tracer.event("credential.refresh", endpoint=endpoint.name)
                return True
            if (
                failure.failure_class == FailureClass.CONTEXT_OVERFLOW
                and not compacted
                and purpose == "chat"
            ):
                compacted = True
                messages[:] = self.compact(messages)
                return True
            return False

        def before_wait(notice: RetryNotice) -> None:
            self.run.retries += 1
            fenced_update(run_id=self.run.pk, epoch=self.epoch, retries=self.run.retries)
            if notice.delay > INLINE_WAIT_MAX and purpose == "chat":
                self.run.state = {
                    "model_retry": {"candidate": notice.candidate, "attempt": notice.attempt}
                }
                raise WaitRequired(
                    notice.delay,
                    f"backoff after {notice.failure.failure_class.value} "
                    f"(attempt {notice.attempt})",
                ) from notice.failure

        try:
            guarded = model_call_guarded(
                tracer=self.tracer,
                candidates=self.candidates,
                policy=self.policy,
                messages=messages,
                tools=specs,
                temperature=self.config.temperature,
                purpose=purpose,
                resume=resume,
                recover=recover,
                before_attempt=lambda endpoint, attempt: self.check_alive(),
                breaker_refresh=self.breaker_stale,
                before_wait=before_wait,
                inline_max=None,  # a long backoff of a chat call waits in before_wait
                on_text=self.stream_text
                if purpose == "chat" and not self.guards.holds_answers
                else None,
                should_stop=self.model_call_unwanted,
            )
        except BreakerOpen as every_breaker_open:
            if every_breaker_open.reopens_in > 0 and purpose == "chat":
                self.run.state = {"model_retry": {"candidate": 0, "attempt": 1}}
                raise WaitRequired(
                    every_breaker_open.reopens_in,
                    "every model endpoint's circuit breaker is open",
                ) from every_breaker_open
            raise
        if guarded.candidate:
            self.run.fallbacks += 1
            fenced_update(run_id=self.run.pk, epoch=self.epoch, fallbacks=self.run.fallbacks)
        self.spend_record(guarded.reply)
        return guarded.reply

    def model_call_unwanted(self) -> bool:
        """Stop reading the model's reply: the lease is lost, or a guardrail beside the call
        refused its input (the reply would be discarded)."""
        beside = self.parallel_check
        return self.beat.lost.is_set() or (beside is not None and beside.tripped.is_set())

    def breaker_stale(self, endpoint: ModelEndpoint) -> bool:
        """Read the endpoint's breaker again? Its state came with the run, and is read again
        once older than BREAKER_READ_EVERY."""
        now = time.monotonic()
        stale = now - self.breakers_read_at.get(endpoint.pk, 0.0) > BREAKER_READ_EVERY
        if stale:
            self.breakers_read_at[endpoint.pk] = now
        return stale

    def stream_text(self, text: str) -> None:
        send_now(
            session_group(self.session.pk),
            {"kind": "token", "run_id": str(self.run.pk), "text": text},
        )
        self.tracer.stream_text(text)  # into the model call's row on the trace page

    def compact(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Context overflow: fold more of the conversation into the summary and reassemble."""
        self.budget = max(256, self.budget // 2)
        return self.assemble(self.tool_specs()[1])

    def fold_into_summary(self, older: list[Message], *, persist: bool = True) -> None:
        """Older messages no longer fit: the model folds them into the running summary."""
        with self.tracer.span("memory.summarize", messages=len(older)) as span:
            chunk_budget = max(512, self.budget // 2)
            remaining = list(older)
            summary = self.parts.summary
            while remaining:
                chunk: list[Message] = []
                used = 0
                while remaining and (not chunk or used + remaining[0].token_count <= chunk_budget):
                    used += remaining[0].token_count
                    chunk.append(remaining.pop(0))
                prompt = [{"role": "system", "content": SUMMARY_PROMPT}]
                if summary:
                    prompt.append({"role": "user", "content": "Summary so far:\n" + summary})
                prompt.append(
                    {
                        "role": "user",
                        "content": "\n".join(
                            f"{m.role}: {m.content or to_openai(m).get('tool_calls', '')}"
                            for m in chunk
                        ),
                    }
                )
                summary = self.call_model(prompt, [], purpose="summary").content.strip()
            upto = older[-1].seq
            span.set(upto_seq=upto, summary_tokens=count_tokens(summary))
        if persist and not self.in_place:  # the session's summary is of its latest state
            from agentops.models import Session

            with transaction.atomic():
                fenced_update(run_id=self.run.pk, epoch=self.epoch)
                Session.objects.filter(pk=self.session.pk).update(
                    summary=summary, summary_upto_seq=upto
                )
            self.session.summary, self.session.summary_upto_seq = summary, upto
        self.parts.summary = summary
        self.transcript.messages = [m for m in self.transcript.messages if m.seq > upto]

    # -- endings -------------------------------------------------------------------------
    def transfer(self, transfer: TransferRequired) -> Run | None:
        """The model passed the conversation to another agent: calls it asked for beside the
        transfer are answered "not run", then this run ends and the target's starts, held by
        this job (None: the transfer did not happen)."""
        answered = transfer.answer.tool_call_id if transfer.answer is not None else None
        pending = [c for c in self.pending_tool_calls() if c.get("id") != answered]
        messages = [transfer.answer] if transfer.answer is not None else []
        messages += not_run_answers(
            pending, f"Not run: the conversation was transferred to {transfer.target.slug}."
        )
        if self.spend is not None:  # what it spent is charged; its reservations go on
            self.spend.flush(now=True)
            self.spend = None
        try:
            successor = transfer_perform(
                driver=self,
                target=transfer.target,
                reason=transfer.reason,
                messages=messages,
                records=transfer.records,
            )
            if transfer.answer is not None:
                self.tools.result_shown(transfer.answer)
            return successor
        except TransferTakenOver as taken:  # nothing stored: the transfer call is not run either
            self.tracer.event("transfer.cancelled", reason="taken over")
            self.takeover_by = taken.operator_id
            try:
                self.stop_for_takeover(self.pending_tool_calls())
            except HandoffRequired as stop:
                self.hand_off(stop.reason)
        except LeaseLost:
            log.warning("run.lease_lost", epoch=self.epoch)
        return None

    def wait(self, wait: WaitRequired) -> None:
        wake_at = timezone.now() + timedelta(seconds=wait.delay) if wait.delay is not None else None
        with transaction.atomic():
            # Locks the run's row: toolcall_decide locks it too, so a decision either came
            # before (and is read below) or waits for this wait to commit and wakes it.
            operator = self.takeover_operator()
            if operator is None and (self.approval_decided(wait) or self.child_done(wait)):
                fenced_update(
                    run_id=self.run.pk,
                    epoch=self.epoch,
                    status=RunStatus.QUEUED,
                    wake_at=None,
                    wait_reason="",
                    state=self.run.state or {},
                )
                self.run.status, self.run.wait_reason = RunStatus.QUEUED, ""
                self.tracer.event("run.status", status=RunStatus.QUEUED, reason="decided already")
                self.tracer.flush()
                run_enqueue(run=self.run)
            elif operator is None:
                fenced_update(
                    run_id=self.run.pk,
                    epoch=self.epoch,
                    status=RunStatus.WAITING,
                    wake_at=wake_at,
                    wait_reason=wait.reason[:200],
                    state=self.run.state or {},
                )
                self.run.status, self.run.wait_reason = RunStatus.WAITING, wait.reason[:200]
                self.tracer.event(
                    "run.status",
                    status=RunStatus.WAITING,
                    reason=wait.reason,
                    wake_in_s=wait.delay,
                )
                waited: dict[str, Any] = {
                    "wait.reason": wait.reason,
                    "wait.wake_at": wake_at.isoformat() if wake_at else None,
                    "wait.delay_s": wait.delay,
                }
                self.tracer.event(semconv.RUN_WAIT, **waited)
                self.tracer.flush()
        if operator is not None:  # a human takes it over rather than it waiting
            self.hand_off(f"taken over by {operator.get_username()}")
            return
        status_broadcast(self.run)

    def child_done(self, wait: WaitRequired) -> bool:
        """Did the child run this run waits on end before it could wait? (Read under the
        run's row lock, which the child's wake takes too: see agent_calls.parent_wake.)"""
        return isinstance(wait.child_run, Run) and child_answer(wait.child_run) is not None

    def approval_decided(self, wait: WaitRequired) -> bool:
        """Was the call this run is to wait on decided before the run could wait? The
        decision then found no waiting run to wake (toolcall_decide wakes only a waiting
        one), so the run goes on at once. Read under the run's row lock (see `wait`)."""
        if wait.approval_call is None:
            return False
        return not ToolCall.objects.filter(
            pk=wait.approval_call, status=ToolCallStatus.AWAITING_APPROVAL
        ).exists()

    def hand_off(
        self, reason: str, *, team: str = "", priority: int = 2, failure_class: str = ""
    ) -> None:
        """Hand the session to a human. A handoff the user or the model asked for has no
        `failure_class`; one the run was driven to (limits, failures) carries its class, and
        only those are listed with the failures."""
        if self.session.sandbox:
            with transaction.atomic(), self.tracer.span("handoff", reason=reason, sandbox=True):
                self.fence_handed_off(reason, failure_class)
            self.tracer.flush()
            self.announce_handed_off(reason, failure_class)
            return
        last_tool_calls = self.last_tool_calls()
        # A team the model named goes first if it exists; otherwise the agent's team.
        to_team = team_get(slug=team) or self.config.handoff_team
        with transaction.atomic():
            # An operator who asked to take it over gets it, whatever made the run hand off.
            operator = self.takeover_operator()
            # A child run answers its caller, not a person: no handoff is queued for it; the
            # caller's model reads that it needs one (agent_calls.child_answer) and decides.
            queued = operator is not None or not answers_a_caller(self.run)
            with self.tracer.span(
                "handoff",
                reason=reason,
                team=to_team.slug if to_team and queued else "",
                requested=not failure_class,
                **({"error.type": str(failure_class)} if failure_class else {}),
                **({"taken_over_by": operator.get_username()} if operator else {}),
                **({} if queued else {"to_caller": True}),
            ):
                self.fence_handed_off(reason, failure_class)
                if queued:
                    handoff_open(
                        session_id=self.session.pk,
                        agent_slug=self.agent.slug,
                        run_id=self.run.pk,
                        reason=reason,
                        team=to_team,
                        priority=priority,
                        last_tool_calls=last_tool_calls,
                        operator=operator,
                    )
            self.tracer.flush()
        # An automatic team's operator is given it by the inbox, which heard handoff.created.
        self.announce_handed_off(reason, failure_class)

    def fence_handed_off(self, reason: str, failure_class: str) -> None:
        """Mark the run handed off in the database, if this worker still holds it."""
        fenced_update(
            run_id=self.run.pk,
            epoch=self.epoch,
            status=RunStatus.HANDED_OFF,
            finished_at=timezone.now(),
            wait_reason=reason[:200],
            error_class=str(failure_class),
        )

    def announce_handed_off(self, reason: str, failure_class: str) -> None:
        """The run in memory as `fence_handed_off` left it in the database, told to watchers."""
        self.run.status, self.run.wait_reason = RunStatus.HANDED_OFF, reason[:200]
        self.run.error_class = str(failure_class)
        status_broadcast(self.run)

    def last_tool_calls(self) -> list[dict[str, Any]]:
        """The part of the context package read from the database, there at once; the model's
        summary and suggested reply follow (runtime/handoff_package.py)."""
        calls = list(
            ToolCall.objects.filter(run__session_id=self.session.pk).order_by("-started_at")[:5]
        )
        return [
            {
                "tool": c.tool_name,
                "arguments": self.tracer.redact(c.arguments),
                "status": c.status,
                "result": self.tracer.redact(c.result[:500]),
            }
            for c in reversed(calls)
        ]

    def fail(self, exc: BaseException) -> None:
        failure_class = getattr(exc, "failure_class", FailureClass.BUG)
        detail = "".join(traceback.format_exception(exc))
        log.error("run.failed", error_class=str(failure_class), exc_info=exc)
        message = self.tracer.redact(str(exc) or type(exc).__name__)
        try:
            with transaction.atomic():
                operator = self.takeover_operator()
                fenced_update(
                    run_id=self.run.pk,
                    epoch=self.epoch,
                    status=RunStatus.FAILED,
                    finished_at=timezone.now(),
                    error_class=str(failure_class),
                    error_message=message[:2000],
                    error_traceback=self.tracer.redact(detail)[:20000],
                )
                self.tracer.event(
                    "run.status",
                    status=RunStatus.FAILED,
                    error_class=str(failure_class),
                    error_message=message,
                )
                if operator is not None:  # the run failed while a takeover was asked for
                    handoff_open(
                        session_id=self.session.pk,
                        agent_slug=self.agent.slug,
                        run_id=self.run.pk,
                        reason=f"taken over by {operator.get_username()} (the run failed: "
                        f"{failure_class})",
                        team=self.agent.handoff_team,
                        last_tool_calls=self.last_tool_calls(),
                        operator=operator,
                    )
                self.tracer.flush()
        except LeaseLost:
            return
        self.run.status, self.run.error_class, self.run.error_message = (
            RunStatus.FAILED,
            str(failure_class),
            message[:2000],
        )
        status_broadcast(self.run)
