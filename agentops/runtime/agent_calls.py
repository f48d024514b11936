"""Agents as tools: an agent version lists agents it may call (`agent_tools` in its snapshot);
the model is offered one `ask_<slug>` tool each. A call starts a child run of the callee's
published version in a child session of its own (the request as its user message), linked to
the call by `Run.parent_run` / `parent_call_id` (unique: one child per call, whatever crashes
and resumes happen around it). The caller waits without holding a worker (WAITING) and is
woken when the child's turn ends (`child_ended`, a subscriber of run.status; the scheduler's
reconcile sweep catches a wake lost to a crash); on resume the call reads the child's answer,
or its failure as a tool error. Tokens roll up from the child to the caller.

Depth (MAX_DEPTH) and fan-out (MAX_CHILDREN per run) are bounded. A child answers its caller
only: its handoff goes to no human queue (the caller's model reads that it needs one, and the
caller decides), and a caller that ends (cancelled, failed, handed off, taken over) cancels its
children still going, and theirs in turn (`children_cancel`, a subscriber of run.status).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from agentops.budgets.models import Budget
from agentops.budgets.services import BudgetExceeded, budget_admit, budget_holds_record
from agentops.models import ACTIVE_RUN_STATUSES, Agent, Message, Role, Run, RunStatus, Session
from agentops.runtime.checkpoint import fenced_update, messages_append, status_broadcast
from agentops.runtime.context import message_tokens
from agentops.runtime.services import (
    RuntimeConflict,
    run_cancel,
    run_enqueue,
    run_retry,
    runs_dispatch_on_commit,
)

if TYPE_CHECKING:
    from agentops.hooks import Event
    from agentops.runtime.loop import RunDriver

PREFIX = "ask_"
MAX_DEPTH = 3
MAX_CHILDREN = 5
ENDED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.HANDED_OFF, RunStatus.CANCELLED)


def agent_tool_name(slug: str) -> str:
    return (PREFIX + slug)[:64]


def agent_tool_specs(agent_tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": agent_tool_name(t["agent"]),
                "description": f"Ask another agent, who answers with its own tools: {t['description']}",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "request": {
                            "type": "string",
                            "description": "What to do, with everything it needs to know.",
                        }
                    },
                    "required": ["request"],
                },
            },
        }
        for t in agent_tools
    ]


def agent_tool_entry(*, agent_tools: list[dict[str, Any]], tool: str) -> dict[str, Any] | None:
    return next((t for t in agent_tools if agent_tool_name(t["agent"]) == tool), None)


def chain_last(run: Run) -> Run:
    """The last run of `run`'s turn (it may have been transferred on)."""
    while (successor := Run.objects.filter(transferred_from=run).first()) is not None:
        run = successor
    return run


def chain_first(run: Run) -> Run:
    while run.transferred_from_id is not None:
        run = Run.objects.get(pk=run.transferred_from_id)
    return run


def _depth(run: Run) -> int:
    depth = 0
    first = chain_first(run)
    while first.parent_run_id is not None:
        depth += 1
        first = chain_first(Run.objects.get(pk=first.parent_run_id))
    return depth


def child_start(
    *, driver: RunDriver, entry: dict[str, Any], call_id: str, request: str
) -> Run | str:
    """The call's child run (started now, or the one an earlier attempt started), or why
    there is none (a message the model reads)."""
    run = driver.run
    existing = Run.objects.filter(parent_run=run, parent_call_id=call_id).first()
    if existing is not None:
        _child_resume(child=existing)
        return existing
    slug = entry["agent"]
    callee = Agent.objects.filter(slug=slug).first()
    if callee is None or callee.published_version_id is None:
        return f"Error: the agent {slug} is not published, so it cannot be asked. Go on without it."
    if _depth(run) + 1 > MAX_DEPTH:
        return f"Error: agents call agents at most {MAX_DEPTH} deep. Answer without asking {slug}."
    if Run.objects.filter(parent_run=run).count() >= MAX_CHILDREN:
        return f"Error: this run asked other agents {MAX_CHILDREN} times already. Go on with what you have."
    try:
        return _child_create(driver=driver, callee=callee, call_id=call_id, request=request)
    except IntegrityError:  # started meanwhile by another attempt of this call
        return Run.objects.get(parent_run=run, parent_call_id=call_id)
    except BudgetExceeded as spent:
        return f"Error: the agent {slug} cannot be asked now: {spent}. Go on without it."


def _child_resume(*, child: Run) -> None:
    """A child cancelled only because its caller ended, asked again by that caller (retried
    since): retried too, from its checkpoint, rather than answering with its cancel."""
    last = chain_last(child)
    if last.status != RunStatus.CANCELLED or last.wait_reason not in CALLER_ENDED.values():
        return
    try:
        run_retry(run=last)
    except RuntimeConflict:
        pass  # it cannot be resumed: its cancel is the answer


def _child_create(*, driver: RunDriver, callee: Agent, call_id: str, request: str) -> Run:
    """The child session, its message and run, admitted against the budgets that apply to
    the child's session (its agent, the same end user): all or nothing. The caller's row is
    locked first, fenced: a caller cancelled meanwhile starts no child (its cancel, which
    waits for that lock, finds the child it started otherwise, and cancels it)."""
    with transaction.atomic():
        fenced_update(run_id=driver.run.pk, epoch=driver.epoch)
        session = Session.objects.create(
            agent=callee,
            external_user=driver.session.external_user,
            title=f"Asked by {driver.agent.name}"[:200],
            sandbox=driver.session.sandbox,
            fork_tools=driver.session.fork_tools,  # a fork's child replays or refuses as it does
        )
        (message,) = messages_append(
            session_id=session.pk,
            messages=[
                Message(
                    role=Role.USER, content=request, token_count=message_tokens(content=request)
                )
            ],
        )
        admission = None
        if not session.sandbox and Budget.objects.filter(enabled=True).exists():
            admission = budget_admit(session=session)
            if admission.handoff is not None:  # a person cannot take a child's request
                raise admission.handoff
        child = Run.objects.create(
            session=session,
            agent=callee,
            agent_version_id=callee.published_version_id,
            trigger=message,
            parent_run=driver.run,
            parent_call_id=call_id,
            enqueued_at=timezone.now(),
        )
        if admission is not None:
            budget_holds_record(run_id=child.pk, admission=admission)
        runs_dispatch_on_commit(agent_id=callee.pk)
    status_broadcast(child)
    return child


def child_answer(child: Run) -> tuple[str, Run] | None:
    """The child's answer for the caller's model (None while its turn goes on), and the run
    that ended it."""
    last = chain_last(child)
    if last.status not in ENDED:
        return None
    name = last.agent.slug
    if last.status == RunStatus.SUCCEEDED:
        answer = (
            Message.objects.filter(run=last, role=Role.ASSISTANT)
            .exclude(content="")
            .order_by("-seq")
            .values_list("content", flat=True)
            .first()
        )
        return (answer or f"(the agent {name} gave no answer)"), last
    if last.status == RunStatus.HANDED_OFF:
        return f"Error: the {name} agent needs a human: {last.wait_reason}.", last
    if last.status == RunStatus.CANCELLED:
        why = f" ({last.wait_reason})" if last.wait_reason else ""
        return f"Error: the {name} agent was cancelled{why}.", last
    detail = f"{last.error_class}: {last.error_message[:300]}" if last.error_class else last.status
    return f"Error: the agent {name} failed ({detail}).", last


def chain_tokens(child: Run) -> tuple[int, int]:
    runs = [chain_first(child)]
    while (successor := Run.objects.filter(transferred_from=runs[-1]).first()) is not None:
        runs.append(successor)
    return sum(r.tokens_in for r in runs), sum(r.tokens_out for r in runs)


# The runs below a run: its children, the runs their turns were transferred to, and theirs.
_RUNS_BELOW = """
WITH RECURSIVE below(id) AS (
    SELECT id FROM agentops_run WHERE parent_run_id = %s
    UNION
    SELECT r.id FROM agentops_run AS r JOIN below AS b
        ON r.parent_run_id = b.id OR r.transferred_from_id = b.id
)
SELECT id FROM below
"""


def runs_below(*, run_id: uuid.UUID | str) -> list[uuid.UUID]:
    """Every run that answered this run's agent calls, at any depth (their model calls cost
    the caller too: its cost is theirs and its own, as its tokens are)."""
    with connection.cursor() as cursor:
        cursor.execute(_RUNS_BELOW, [str(run_id)])
        return [row[0] for row in cursor.fetchall()]


def answers_a_caller(run: Run) -> bool:
    """Is the run (or the run its turn was transferred from) another run's child? (A run of
    a transferred turn reads only the ids of the runs before it.)"""
    parent_id, before_id = run.parent_run_id, run.transferred_from_id
    while parent_id is None and before_id is not None:
        parent_id, before_id = (
            Run.objects.filter(pk=before_id)
            .values_list("parent_run_id", "transferred_from_id")
            .first()
        ) or (None, None)
    return parent_id is not None


def parent_wake(*, run_id: uuid.UUID | str) -> None:
    """A run's turn ended: if it answers another run's call, wake that run (locked first, as
    the caller's wait locks it: the caller either sees the child ended, or is waiting now)."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return
    child = chain_first(run)
    if child.parent_run_id is None:
        return
    with transaction.atomic():
        # Locked by its key alone: a caller about to write WAITING holds the lock, and a
        # status filter would skip its row (still `running` as committed) instead of waiting.
        parent = Run.objects.select_for_update(of=("self",)).filter(pk=child.parent_run_id).first()
        if (
            parent is None
            or parent.status != RunStatus.WAITING
            or (parent.state or {}).get("child") != str(child.pk)
        ):
            return  # not waiting, or waiting for something else (an approval, a backoff)
        Run.objects.filter(pk=parent.pk).update(
            status=RunStatus.QUEUED, wake_at=None, wait_reason=""
        )
        parent.status = RunStatus.QUEUED
        run_enqueue(run=parent)
    status_broadcast(parent)


def child_ended(event: Event) -> None:
    """Subscriber of run.status: a child run's turn ended → its caller wakes (after commit)."""
    run = event.run
    if run is None or event.data.get("status") not in ENDED:
        return
    if not answers_a_caller(run):
        return
    if (
        event.data.get("status") == RunStatus.SUCCEEDED
        and Run.objects.filter(transferred_from=run).exists()
    ):
        return  # transferred on: the turn goes on
    run_id = run.pk
    transaction.on_commit(lambda: parent_wake(run_id=run_id))


CALLER_ENDED = {
    RunStatus.CANCELLED: "its caller was cancelled",
    RunStatus.FAILED: "its caller failed",
    RunStatus.HANDED_OFF: "its caller was handed off",
    RunStatus.SUCCEEDED: "its caller ended",
}


def children_cancel(event: Event) -> None:
    """Subscriber of run.status: a run that ended (cancelled, failed, handed off, taken over)
    has nobody to answer for its children still going: each is cancelled through run_cancel,
    whose own status event cancels its children in turn. In the announcer's transaction, which
    holds the caller's row: a child started before is found, none can start after (see
    `_child_create`)."""
    run = event.run
    status = event.data.get("status")
    if run is None or status not in ENDED:
        return
    reason = CALLER_ENDED[RunStatus(status)]
    for child in Run.objects.filter(parent_run_id=run.pk).only("pk", "transferred_from"):
        _turn_cancel(child=child, reason=reason)


def _turn_cancel(*, child: Run, reason: str) -> None:
    """Cancel the run of the child's turn still going (the child, or the run it transferred
    the turn to)."""
    last = chain_last(child)
    if last.status not in ACTIVE_RUN_STATUSES:
        return
    try:
        run_cancel(run=last, reason=reason)
    except RuntimeConflict:
        pass  # it ended meanwhile


def children_orphaned_cancel() -> int:
    """Children still going whose caller ended (a cascade lost to a crash): cancelled."""
    from agentops.runtime.transfers import MAX_PER_TURN

    # The child itself, or a run of its turn (at most MAX_PER_TURN transfers from it).
    hops = ["transferred_from__" * n for n in range(MAX_PER_TURN + 1)]
    ended_caller = Q()
    for hop in hops:
        ended_caller |= Q(**{f"{hop}parent_run__status__in": ENDED})
    orphans = Run.objects.filter(status__in=ACTIVE_RUN_STATUSES).filter(ended_caller)
    cancelled = 0
    for orphan in orphans.select_related(*(f"{hop}parent_run" for hop in hops)):
        first = orphan
        while first.parent_run_id is None and first.transferred_from is not None:
            first = first.transferred_from
        assert first.parent_run is not None
        _turn_cancel(child=orphan, reason=CALLER_ENDED[RunStatus(first.parent_run.status)])
        cancelled += 1
    return cancelled


def parents_reconcile() -> int:
    """Waiting callers whose children have all ended (a wake lost to a crash): woken. And
    children whose caller ended before them (a cancel lost to a crash): cancelled."""
    children_orphaned_cancel()
    woken = 0
    waiting = Run.objects.filter(status=RunStatus.WAITING, state__has_key="child")
    for state in waiting.values_list("state", flat=True):
        child = Run.objects.filter(pk=state["child"]).first()
        if child is not None and child_answer(child) is not None:
            parent_wake(run_id=child.pk)
            woken += 1
    return woken


# -- forks: an agent call answered from the recording ----------------------------------------
class AgentCallRecording(NamedTuple):
    """One call of an agent tool as a run recorded it: the step its answer was stored at, the
    request, the answer its model read, and the child run that gave it (None when the run
    itself answered the call from a recording: a fork of a fork)."""

    step: int
    request: str
    answer: str
    child_run_id: uuid.UUID | None


def agent_call_recordings(*, run_id: uuid.UUID, tool: str) -> list[AgentCallRecording]:
    """The calls of the agent tool `tool` that the run `run_id` had answered, in order: those
    its child runs answered (the request as its model wrote it, the answer as its model read
    it; a child still running answered nothing yet), those it answered from a recording, and,
    for a fork, those its copied history answered (its origin's children, up the forks)."""
    from agentops.models import ToolCall, ToolCallStatus
    from tracing.platform.json_input import json_parse

    messages = list(
        Message.objects.filter(run_id=run_id, role__in=(Role.ASSISTANT, Role.TOOL))
        .order_by("seq")
        .only("role", "step", "content", "tool_calls", "tool_call_id")
    )
    answers = {(m.tool_call_id, m.step): m.content for m in messages if m.role == Role.TOOL}
    recordings = []
    for child, step, call_id in _children_answered(run_id=run_id):
        asked = [
            c
            for m in messages
            if m.role == Role.ASSISTANT and (m.step or 0) <= step
            for c in m.tool_calls or []
            if c.get("id") == call_id and (c.get("function") or {}).get("name") == tool
        ]
        if not asked:
            continue
        raw = str((asked[-1].get("function") or {}).get("arguments") or "")
        try:
            arguments = json_parse(raw, nul_ok=True) if raw.strip() else {}
        except ValueError:
            continue
        request = arguments.get("request") if isinstance(arguments, dict) else None
        answer = answers.get((call_id, step + 1))
        if answer is None and (answered := child_answer(child)) is not None:
            answer = answered[0]  # the caller stopped before reading it (cancelled, say)
        if isinstance(request, str) and answer is not None:
            recordings.append(AgentCallRecording(step + 1, request, answer, child.pk))
    # Its own replays, and those copied (or edited) from the run it was forked from.
    replayed = ToolCall.objects.filter(
        run_id=run_id, tool_name=tool, status=ToolCallStatus.SUCCEEDED
    ).exclude(fork_outcome="")
    for row in replayed:
        request = row.arguments.get("request") if isinstance(row.arguments, dict) else None
        if isinstance(request, str):
            recordings.append(AgentCallRecording(row.step, request, row.result, None))
    return sorted(recordings, key=lambda r: r.step)


def _children_answered(*, run_id: uuid.UUID) -> list[tuple[Run, int, str]]:
    """The child runs whose answers the run's conversation holds, each with the step it was
    asked at and its call id: the run's own, and for a fork those of its origin answered by
    the fork point (a fork copies their messages, never the child runs), up the forks."""
    found: list[tuple[Run, int, str]] = []
    run: Run | None = Run.objects.only("forked_from", "forked_at_step").get(pk=run_id)
    upto: int | None = None  # any step of the run itself
    while run is not None:
        for child in Run.objects.filter(parent_run_id=run.pk).order_by("created_at", "pk"):
            step_text, _, call_id = child.parent_call_id.partition(":")
            if not step_text.isdigit() or not call_id:
                continue  # keyed before calls were keyed by their step: not known which
            if upto is None or int(step_text) + 1 <= upto:
                found.append((child, int(step_text), call_id))
        if run.forked_from_id is None or run.forked_at_step is None:
            break
        upto = run.forked_at_step if upto is None else min(upto, run.forked_at_step)
        run = (
            Run.objects.only("forked_from", "forked_at_step").filter(pk=run.forked_from_id).first()
        )
    return found
