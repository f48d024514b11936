"""Entry points into the runtime for the API, the console and the operators' pages.

Postgres is the source of truth; Redis is only a queue. Every state change is a
conditional UPDATE, so any number of web processes, workers and schedulers may race.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import django_rq
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from agentops.budgets.services import (
    BudgetExceeded,
    budget_admit,
    budget_holds_record,
    budget_holds_release_ended,
)
from agentops.conversation import handoff_event_serialise
from agentops.events import event_record
from agentops.guardrails.services import at_the_door, guardrails_apply
from agentops.models import (
    ACTIVE_RUN_STATUSES,
    Agent,
    AgentVersion,
    ForkOutcome,
    ForkTools,
    Handoff,
    HandoffStatus,
    Message,
    Role,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    Team,
    ToolCall,
    ToolCallStatus,
)
from agentops.runtime.checkpoint import messages_append, status_broadcast
from agentops.runtime.context import message_tokens
from agentops.runtime.handoff_package import (
    handoff_package_enqueue,
    handoff_packages_reconcile,
)
from tracing.emit import Tracer
from tracing.platform.enqueue import queue_job_on_commit
from tracing.platform.errors import Conflict, Invalid, NotFound
from tracing.platform.logs import get_logger

if TYPE_CHECKING:
    from agentops.auth import Actor

log = get_logger(__name__)

MAX_MESSAGE_CHARS = 32_000


class RuntimeConflict(Conflict):
    """The request cannot be done in the run's or session's current state."""


class AgentNotLive(RuntimeConflict):
    """The agent has saved versions but none published: only its draft chat runs it."""

    def __init__(self, agent: Agent) -> None:
        super().__init__(
            f"{agent.slug} has no published version yet; publish one in the agent "
            "builder (until then only its draft chat runs it)",
            field="agent",
        )


def agent_live_check(
    *, agent: Agent, version: AgentVersion | None = None, is_live: bool | None = None
) -> None:
    """Refuse a conversation with an agent nothing was published of, unless it is pinned to a
    version (a draft chat, an experiment). See AgentQuerySet.live. `is_live`: already read
    with the row that holds the agent (else asked of the database)."""
    if version is None and not (agent.is_live if is_live is None else is_live):
        raise AgentNotLive(agent)


def run_enqueue(*, run: Run) -> None:
    """Put the queued run in line for a worker: held in Postgres (queued, no job yet), then
    sent to RQ by `runs_dispatch` at once if its agent has a free slot, else when one frees."""
    Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        enqueued_at=timezone.now(), job_id=""
    )
    runs_dispatch(agent_id=run.agent_id)


def runs_dispatch(*, agent_id: int) -> int:
    """Send the agent's held runs to RQ, oldest first, while it has fewer than its limit of
    runs in flight (`Agent.max_concurrent_runs`, else AGENT_MAX_CONCURRENT_RUNS; 0: none).

    The limit is what keeps agents fair: however many runs one agent has waiting, at most its
    limit stand in the RQ queue or run, so another agent's run lines up behind those, not
    behind the whole flood. The agent's row lock serialises dispatchers (the web, workers
    finishing runs, the scheduler), held until the caller's transaction ends, or only while
    Postgres runs the dispatch when there is none; each send is a conditional UPDATE, so a
    run cancelled meanwhile is skipped. One statement, the server-side function of migration
    0028 (`agentops_runs_dispatch`). Returns how many runs were sent.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT dispatched_id, dispatched_job_id FROM agentops_runs_dispatch(%s, %s, %s)",
            [agent_id, settings.AGENT_MAX_CONCURRENT_RUNS, str(time.time_ns())],
        )
        sent = cursor.fetchall()
    for run_id, job_id in sent:
        _job_send(run_id=run_id, job_id=job_id)
    return len(sent)


def runs_dispatch_on_commit(*, agent_id: int) -> None:
    """`runs_dispatch` once the caller's transaction has committed, outside any: the agent's
    row lock is then held while Postgres runs the dispatch, not for the rest of the caller's
    work (with a hundred posts at once, waiting for that lock was most of a post's time). If
    Postgres fails it then, the scheduler's sweep sends the held run."""

    def dispatch() -> None:
        try:
            runs_dispatch(agent_id=agent_id)
        except DatabaseError as exc:
            log.warning("run.dispatch_deferred", agent_id=agent_id, error=str(exc))

    transaction.on_commit(dispatch)


# The run's agent, if it has runs held back (queued, not yet sent): one statement.
_AGENT_WITH_HELD_RUNS = """
SELECT r.agent_id FROM agentops_run AS r WHERE r.id = %s AND EXISTS (
    SELECT 1 FROM agentops_run AS h
    WHERE h.agent_id = r.agent_id AND h.status = 'queued' AND h.job_id = ''
)
"""


def run_slot_free(*, run_id: uuid.UUID | str) -> None:
    """A worker is done with the run: if its agent has runs held back, send the next ones.
    If Postgres is away, the scheduler's sweep sends them once it is back."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(_AGENT_WITH_HELD_RUNS, [run_id])
            held = cursor.fetchone()
        if held:
            runs_dispatch(agent_id=held[0])
    except DatabaseError as exc:
        log.warning("run.dispatch_deferred", run_id=str(run_id), error=str(exc))


def run_held_requeue(*, run: Run) -> None:
    """A run this job holds (a transfer's target) but will not drive: back to the queue,
    sent as its agent's slots allow, to a job of its own."""
    if Run.objects.filter(pk=run.pk, epoch=run.epoch, status=RunStatus.RUNNING).update(
        status=RunStatus.QUEUED, job_id="", worker="", enqueued_at=timezone.now()
    ):
        runs_dispatch(agent_id=run.agent_id)


def run_released(*, run_id: uuid.UUID | str, sandbox: bool | None = None) -> None:
    """A job is done with a run (however it ended, also when its turn went on to another
    agent's run in the same job): its agent's held runs may go, and whoever waits for the
    run's end hears it (an experiment scores its turn). `sandbox`: whether its session is
    one, if known (None: it was not read)."""
    from agentops.hooks import Event, event_announce

    run_slot_free(run_id=run_id)
    event_announce(Event(kind="run.job_ended", data={"run_id": str(run_id), "sandbox": sandbox}))


def _job_send(*, run_id: uuid.UUID, job_id: str) -> None:
    # If Redis is away the run stays queued: the scheduler enqueues it again once Redis is
    # back (after RUN_LOST_JOB_SECONDS). The caller sees a delay, not an error.
    queue_job_on_commit(
        queue=settings.RUN_QUEUE,
        func="agentops.jobs.run_job",
        args=(str(run_id),),
        job_id=job_id,
        job_timeout=settings.RUN_JOB_TIMEOUT,
        sweep="runs_reconcile",
    )


def session_create(
    *,
    agent: Agent,
    external_user: str = "",
    created_by: Actor = None,
    title: str = "",
    sandbox: bool = False,
    version: AgentVersion | None = None,
) -> Session:
    """A conversation with the agent's published version, or pinned to `version` (a draft
    chat); AgentNotLive when there is neither."""
    agent_live_check(agent=agent, version=version)
    session = Session.objects.create(
        agent=agent,
        external_user=external_user[:200],
        title=title[:200],
        created_by=created_by if created_by and created_by.is_authenticated else None,
        sandbox=sandbox,
        agent_version=version,
    )
    if not sandbox:  # a draft chat is nobody's conversation: integrators are not told
        event_record(kind="session.created", session=session, ops=False)
    return session


@transaction.atomic
def session_post_message(
    *, session: Session, content: str, author: Actor = None, api_key_id: int | None = None
) -> Run | None:
    """Add the end user's message (written by the session's external user, sent by `author`:
    the API key's owner or the console's user, with the key `api_key_id`) and start a run for
    it. The session is read here, under its lock (only `session.pk` is used): NotFound when
    there is none. The run counts against the budgets that apply (agentops.budgets):
    BudgetExceeded (429) at one set to refuse; at one set to hand off, the conversation goes
    to a person and no run starts (None). No statement more when no budget exists (the
    session's lock reads whether any does).

    A fixed number of statements whatever the conversation or the agent's load: the session's
    lock (with what the post needs of its agent), the active-run check (after the lock, so
    it sees the run a concurrent post just committed), the message, the run; then, committed,
    the dispatch in its own transaction."""
    if not content.strip():
        raise Invalid("must not be empty", field="content")
    if len(content) > MAX_MESSAGE_CHARS:
        raise Invalid(f"longer than {MAX_MESSAGE_CHARS} characters", field="content")
    locked = _session_lock(session_id=session.pk)
    if locked is None:
        raise NotFound("not found")
    session = locked
    if session.status == SessionStatus.CLOSED:
        raise RuntimeConflict("the session is closed")
    if session.agent_version_id is None:  # one pinned to a version runs it, published or not
        # Published: live without asking (AgentQuerySet.live); else the database decides.
        published = session.agent.published_version_id is not None
        agent_live_check(agent=session.agent, is_live=True if published else None)
    if _session_run_active(session_id=session.pk):
        raise RuntimeConflict(
            "The agent is still answering the last message: wait for its answer, or cancel it."
        )
    run_id = uuid.uuid4()
    content, redactions = _redacted_at_the_door(session=session, content=content, run_id=run_id)
    message = Message(
        role=Role.USER,
        content=content,
        token_count=message_tokens(content=content),
        author=author if author and author.is_authenticated else None,
        end_user=session.external_user,
    )
    (message,) = messages_append(session_id=session.pk, messages=[message])
    if session.status == SessionStatus.HANDED_OFF:
        # A human has the conversation: the message waits for the operator, no run starts
        # (the inbox hears it and returns a snoozed handoff of it to the queue).
        event_record(kind="session.message", session=session)
        return None
    admission = None
    if session.budgets_any and not session.sandbox:  # type: ignore[attr-defined]
        admission = budget_admit(session=session, api_key_id=api_key_id)
        if admission.handoff is not None:
            _budget_hand_off(session=session, refusal=admission.handoff)
            return None
    run = _run_create(
        session=session,
        trigger=message,
        enqueued_at=timezone.now(),
        run_id=run_id,
        state={"input_redacted": True} if redactions is not None else None,
    )
    if redactions is not None:
        redactions.flush()  # the decisions, in the run's trace
    if admission is not None:
        budget_holds_record(run_id=run.pk, admission=admission)
    runs_dispatch_on_commit(agent_id=run.agent_id)  # created in line, as run_enqueue sets
    status_broadcast(run)
    return run


def _redacted_at_the_door(
    *, session: Session, content: str, run_id: uuid.UUID
) -> tuple[str, Tracer | None]:
    """The message as the agent's redacting input guardrails leave it, before it is stored or
    anyone sees it (live viewers, an operator who has the conversation); their decisions are
    spans of the run the message starts (the tracer, to flush once it exists). The run's own
    input check then reads the redacted text; its other guardrails decide there."""
    guardrails = getattr(session, "run_guardrails", None) or []
    if isinstance(guardrails, str):  # jsonb comes as text to Django's connections
        guardrails = json.loads(guardrails) or []
    redacting = at_the_door(guardrails)
    if not redacting:
        return content, None
    tracer = Tracer(
        run_id,
        session_id=session.pk,
        agent=session.agent.slug,
        sandbox=session.sandbox,
        new_trace=True,
    )
    outcome = guardrails_apply(guardrails=redacting, text=content, tracer=tracer)
    return outcome.text, tracer


def _budget_hand_off(*, session: Session, refusal: BudgetExceeded) -> None:
    """A budget at its limit says hand off: the message waits for a person of the agent's
    team, as when a run hands off."""
    agent = Agent.objects.select_related("handoff_team").get(pk=session.agent_id)
    handoff_open(
        session_id=session.pk,
        agent_slug=agent.slug,
        run_id=None,
        reason=f"budget reached: {refusal.message}"[:2000],
        team=agent.handoff_team,
    )


# The post path's reads, in SQL: composing them with the ORM cost more CPU than running them.
_SESSION_LOCK = (
    "SELECT s.*, a.slug AS agent_slug, a.published_version_id AS agent_published_version_id,"
    " EXISTS (SELECT 1 FROM agentops_budget b WHERE b.enabled) AS budgets_any,"
    # The guardrails its run will have: its version's, else (none) the agent's own settings.
    " CASE WHEN COALESCE(s.agent_version_id, a.published_version_id) IS NULL THEN a.guardrails"
    "  ELSE (SELECT v.config -> 'guardrails' FROM agentops_agentversion v"
    "   WHERE v.id = COALESCE(s.agent_version_id, a.published_version_id)) END AS run_guardrails"
    " FROM agentops_session s JOIN agentops_agent a ON a.id = s.agent_id"
    " WHERE s.id = %s FOR UPDATE OF s"
)


def _session_lock(*, session_id: uuid.UUID | str) -> Session | None:
    """The session, locked until the transaction ends, with what the post needs of its agent
    (its id, slug and published version; any other field is read if asked for)."""
    session = next(iter(Session.objects.raw(_SESSION_LOCK, [session_id])), None)
    if session is None:
        return None
    session.agent = Agent.from_db(
        connection.alias,
        ["id", "slug", "published_version_id"],
        [session.agent_id, session.agent_slug, session.agent_published_version_id],  # type: ignore[attr-defined]
    )
    return session


def _session_run_active(*, session_id: uuid.UUID | str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM agentops_run WHERE session_id = %s AND status = ANY(%s))",
            [session_id, [str(status) for status in ACTIVE_RUN_STATUSES]],
        )
        (active,) = cursor.fetchone()
    return bool(active)


def _run_create(
    *,
    session: Session,
    trigger: Message | None = None,
    enqueued_at: datetime | None = None,
    run_id: uuid.UUID | None = None,
    state: dict[str, Any] | None = None,
) -> Run:
    """A run records the version it runs: the session's own, else the agent's published one."""
    return Run.objects.create(
        id=run_id or uuid.uuid4(),
        state=state or {},
        session=session,
        agent=session.agent,
        agent_version_id=session.agent_version_id or session.agent.published_version_id,
        trigger=trigger,
        enqueued_at=enqueued_at,
    )


def handoff_open(
    *,
    session_id: uuid.UUID | str,
    agent_slug: str,
    run_id: uuid.UUID | str | None,
    reason: str,
    team: Team | None = None,
    priority: int = 2,
    last_tool_calls: list[dict[str, Any]] | None = None,
    operator: Any = None,
) -> Handoff:
    """Hand the session to a human (inside the caller's transaction): the handoff, its context
    package job, the session's state, and the news for the queue, the session's viewers and
    the webhooks. With `operator` (a takeover) it is claimed by them from the start."""
    if Session.objects.sandbox().filter(pk=session_id).exists():
        raise RuntimeConflict("a sandbox conversation (draft chat, experiment, fork) is no one's")
    now = timezone.now()
    handoff = Handoff.objects.create(
        session_id=session_id,
        run_id=run_id,
        reason=reason,
        team=team,
        priority=priority,
        last_tool_calls=last_tool_calls or [],
        **(
            {
                "status": HandoffStatus.CLAIMED,
                "claimed_by": operator,
                "claimed_at": now,
                "taken_over": True,
            }
            if operator is not None
            else {}
        ),
    )
    handoff_package_enqueue(handoff_id=handoff.pk)
    Session.objects.filter(pk=session_id).update(
        status=SessionStatus.HANDED_OFF, operator=operator, updated_at=now
    )
    # The inbox hears it and gives it to an operator of an automatic team once it commits.
    event_record(
        kind="handoff.created",
        handoff=handoff,
        data={**handoff_event_serialise(handoff), "agent": agent_slug},
    )
    if operator is not None:
        event_record(
            kind="handoff.claimed",
            actor=operator,
            handoff=handoff,
            data={"operator": operator.get_username()},
            audit="handoff.take_over",
            detail={"run": str(run_id) if run_id else ""},
            viewers=True,
        )
    return handoff


def run_start(*, session: Session) -> Run:
    """Start a run on the session's existing messages (hand-back after a takeover)."""
    run = _run_create(session=session)
    run_enqueue(run=run)
    status_broadcast(run)
    return run


@transaction.atomic
def run_cancel(*, run: Run, actor: Actor = None, reason: str = "") -> Run:
    """Cancel a run that has not ended. A worker holding it stops at its next write (fenced).
    Its status fan-out (run.status) cancels the child runs it was waiting for, in turn
    (agent_calls.children_cancel), with `reason` saying why ("its caller was cancelled")."""
    cancelled = Run.objects.filter(pk=run.pk, status__in=ACTIVE_RUN_STATUSES).update(
        status=RunStatus.CANCELLED,
        finished_at=timezone.now(),
        wake_at=None,
        **({"wait_reason": reason[:200]} if reason else {}),  # else what it waited for stays
    )
    run.refresh_from_db()
    if not cancelled:
        raise RuntimeConflict(f"run {run.pk} is already {run.status}")
    status_broadcast(run, actor=actor, audit="run.cancel")
    return run


@transaction.atomic
def run_retry(*, run: Run, actor: Actor = None) -> Run:
    """Resume a failed (or cancelled) run from its last checkpoint.

    The run answers its own user message. If newer turns came since, it answers in place:
    it sees the conversation as it stood at its message (and its own steps), and its answer
    is added at the end of the session. If its message was since folded into the session's
    summary, it can no longer be shown verbatim and the retry is refused.
    """
    retried = Run.objects.filter(
        pk=run.pk, status__in=[RunStatus.FAILED, RunStatus.CANCELLED]
    ).update(
        status=RunStatus.QUEUED,
        finished_at=None,
        error_class="",
        error_message="",
        error_traceback="",
        wait_reason="",  # why it was cancelled: no longer so
        state={},
    )
    run.refresh_from_db()
    if not retried:
        raise RuntimeConflict(
            f"only failed or cancelled runs can be retried; run {run.pk} is {run.status}"
        )
    if (
        Run.objects.filter(session_id=run.session_id, status__in=ACTIVE_RUN_STATUSES)
        .exclude(pk=run.pk)
        .exists()
    ):
        raise RuntimeConflict("another run of this session is in progress")
    trigger = run.trigger
    if trigger is not None and run.session.summary_upto_seq >= trigger.seq:
        raise RuntimeConflict(
            "this run's message has since been folded into the conversation's summary, so it "
            "can no longer be answered as it was asked; send it again as a new message"
        )
    run_enqueue(run=run)
    status_broadcast(run, actor=actor, audit="run.retry")
    return run


@transaction.atomic
def toolcall_decide(
    *, tool_call: ToolCall, approve: bool, actor: Actor, note: str = ""
) -> ToolCall:
    """An operator approves or rejects a call waiting for approval; the run resumes.

    The run's row is locked first: a run about to wait holds it until its wait is committed
    (RunDriver.wait), so this either finds the run waiting and wakes it, or comes first and
    is read by the run, which then goes on without waiting. Without the lock a decision made
    while the run's WAITING write was uncommitted saw a running run (Postgres skips a locked
    row whose committed version misses the WHERE) and the run waited forever."""
    status = ToolCallStatus.APPROVED if approve else ToolCallStatus.REJECTED
    with transaction.atomic():
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("session", "agent")
            .filter(pk=tool_call.run_id)
            .first()
        )
        if run is None or run.status not in ACTIVE_RUN_STATUSES:
            raise RuntimeConflict("its run has ended (cancelled or taken over): nothing awaits it")
        decided = ToolCall.objects.filter(
            pk=tool_call.pk, status=ToolCallStatus.AWAITING_APPROVAL
        ).update(
            status=status, decided_by=actor, decided_at=timezone.now(), decision_note=note[:2000]
        )
        tool_call.refresh_from_db()
        if not decided:
            raise RuntimeConflict(f"this call was already {tool_call.status}")
        woke = Run.objects.filter(pk=run.pk, status=RunStatus.WAITING).update(
            status=RunStatus.QUEUED, wake_at=None, wait_reason=""
        )
        if woke:
            run.refresh_from_db()
            run_enqueue(run=run)
            status_broadcast(run)
        event_record(
            kind="approval.decided",
            actor=actor,
            session=run.session_id,
            data={"tool_call_id": tool_call.pk, "approved": approve, "tool": tool_call.tool_name},
            audit="tool.approve" if approve else "tool.reject",
            target=tool_call.tool_name,
            detail={"tool_call": tool_call.pk, "note": note[:500]},
            viewers=True,
        )
    return tool_call


def _job_alive(job_id: str) -> bool:
    """Will this job still run? Only if it waits in its queue (or is scheduled/deferred).

    A job marked queued but missing from the queue list — its worker was killed between
    taking it and starting it, or Redis lost the list — never runs; nor does a job marked
    started for a run that is still unclaimed long after.
    """
    if not job_id:
        return False
    queue = django_rq.get_queue(settings.RUN_QUEUE)
    try:
        job = Job.fetch(job_id, connection=queue.connection)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status == JobStatus.QUEUED:
        return queue.get_job_position(job_id) is not None
    return status in (JobStatus.SCHEDULED, JobStatus.DEFERRED)


def runs_reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """The scheduler's sweep: wake due waits, recover runs whose worker died, and re-enqueue
    queued runs whose job Redis lost. Safe to run anywhere, any number of times."""
    now = now or timezone.now()
    stale_after = timedelta(seconds=settings.RUN_STALE_SECONDS)
    lost_job_after = timedelta(seconds=settings.RUN_LOST_JOB_SECONDS)
    counts = {
        "woken": 0,
        "recovered": 0,
        "requeued": 0,
        "dispatched": 0,
        "packages": 0,
        "budget_holds": 0,
    }
    for run in Run.objects.filter(status=RunStatus.WAITING, wake_at__lte=now).only(
        "pk", "session_id"
    ):
        with transaction.atomic():
            if Run.objects.filter(pk=run.pk, status=RunStatus.WAITING, wake_at__lte=now).update(
                status=RunStatus.QUEUED, wake_at=None
            ):
                counts["woken"] += 1
                run_enqueue(run=run)
    stale = Run.objects.filter(status=RunStatus.RUNNING).filter(
        Q(heartbeat_at__lt=now - stale_after) | Q(heartbeat_at__isnull=True)
    )
    for run in stale.only("pk", "heartbeat_at", "worker"):
        with transaction.atomic():
            if Run.objects.filter(
                pk=run.pk, status=RunStatus.RUNNING, heartbeat_at=run.heartbeat_at
            ).update(status=RunStatus.QUEUED):
                counts["recovered"] += 1
                log.warning("run.recovered", run_id=str(run.pk), worker=run.worker)
                run_enqueue(run=run)
    lost = Run.objects.filter(
        status=RunStatus.QUEUED, enqueued_at__lt=now - lost_job_after
    ).exclude(job_id="")
    for run in lost.only("pk", "job_id", "agent_id"):
        if not _job_alive(run.job_id):
            with transaction.atomic():
                counts["requeued"] += 1
                log.warning("run.requeued", run_id=str(run.pk), job_id=run.job_id)
                run_enqueue(run=run)
    # Held runs are sent as slots free; this catches a slot freed by a worker that died.
    held_agents = (
        Run.objects.filter(status=RunStatus.QUEUED, job_id="")
        .order_by()
        .values_list("agent_id", flat=True)
        .distinct()
    )
    counts["dispatched"] = sum(runs_dispatch(agent_id=agent_id) for agent_id in held_agents)
    counts["packages"] = handoff_packages_reconcile(older_than=lost_job_after, now=now)
    counts["budget_holds"] = budget_holds_release_ended()
    return counts


class ForkInvalid(Conflict):
    """A fork asked for what the run cannot give; `field` names the input to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


def _fork_prefix(*, run: Run, own: list[Message]) -> list[Message]:
    """The conversation as it stood when the run began: up to and with its user message."""
    rows = Message.objects.filter(session_id=run.session_id).select_related("author")
    if run.trigger_id is not None and run.trigger is not None:
        return list(rows.filter(seq__lte=run.trigger.seq).order_by("seq"))
    if own:
        return list(rows.filter(seq__lt=own[0].seq).exclude(run=run).order_by("seq"))
    return list(rows.filter(created_at__lte=run.created_at).order_by("seq"))


def _fork_scratchpad(*, copied: list[Message]) -> dict[str, str]:
    """The working notes as they stood at the fork point: the recorded `note` calls of the
    copied conversation, applied in order (the session keeps only its latest notes)."""
    wanted = {
        (m.run_id, m.step, m.tool_call_id)
        for m in copied
        if m.role == Role.TOOL and m.name == "note" and m.run_id
    }
    if not wanted:
        return {}
    calls: dict[tuple[Any, Any, str], Any] = {
        (c.run_id, c.step, c.call_id): c.arguments
        for c in ToolCall.objects.filter(
            run_id__in={run_id for run_id, _, _ in wanted},
            tool_name="note",
            status=ToolCallStatus.SUCCEEDED,
        )
    }
    notes: dict[str, str] = {}
    for m in copied:
        arguments = calls.get((m.run_id, m.step, m.tool_call_id))
        if m.role == Role.TOOL and isinstance(arguments, dict) and "key" in arguments:
            notes[str(arguments["key"])[:64]] = str(arguments.get("value", ""))[:2000]
    return notes


def _fork_version(
    *, run: Run, number: int | None, model: str | None, actor: Actor
) -> AgentVersion | None:
    """The version a fork runs: the origin run's, or the agent's version `number`; with
    `model`, a version derived from that one with only the model changed."""
    from agentops.agents.services import agent_version_create, agent_version_derive

    version = run.agent_version
    if number is not None:
        version = AgentVersion.objects.filter(agent_id=run.agent_id, number=number).first()
        if version is None:
            raise ForkInvalid("agent_version", f"agent {run.agent.slug} has no version {number}")
    if model is None:
        return version
    if not model.strip() or len(model) > 200:
        raise ForkInvalid("model", "give a model name of 1 to 200 characters")
    if version is None:  # a run from before versions: its agent's settings as they are
        version = agent_version_create(agent=run.agent, author=actor, note="the base of a fork")
    try:
        return agent_version_derive(
            version=version,
            changes={"model": model},
            author=actor,
            note=f"fork of run {run.pk}: v{version.number} with model {model}",
        )
    except ValidationError as exc:
        raise ForkInvalid("model", " ".join(exc.messages)) from exc


@transaction.atomic
def run_fork(
    *,
    run: Run,
    step: int,
    content: str | None = None,
    allow_side_effects: bool = False,
    agent_version: int | None = None,
    model: str | None = None,
    actor: Actor = None,
) -> Run:
    """Fork the run's conversation at the end of `step` into a new session and start a run
    that continues from there.

    Step 0 is the run's start (its user message); step k is what the run's k-th checkpoint
    wrote (a model reply or a tool result). `content` replaces that message's text (the user
    message, the assistant's reply or the tool result) before the fork goes on. The fork copies
    the conversation up to that point and the run's tool call records up to it (nothing is
    executed again). Its working memory is the origin's as of the fork point: the running
    summary when it covers only messages before the run, else none (the fork folds its own
    when its context fills up); the working notes replayed from the copied `note` calls.
    After the fork point, a non-idempotent tool runs only with `allow_side_effects`;
    otherwise it is answered from the origin run's recording of the same call, or refused.
    The fork runs the origin run's agent version, or version number `agent_version` of the
    agent; with `model`, an unpublished version derived from that one with the model changed.
    """
    run = Run.objects.select_related("session", "agent", "trigger", "agent_version").get(pk=run.pk)
    if step < 0 or step > run.step:
        raise ForkInvalid(
            "step", f"run {run.pk} has steps 0 to {run.step}; {step} is not one of them"
        )
    own = list(
        Message.objects.filter(run=run, step__lte=step).select_related("author").order_by("seq")
    )
    target = run.trigger if step == 0 else next((m for m in own if m.step == step), None)
    if step and target is None:
        raise ForkInvalid("step", f"step {step} of run {run.pk} has no stored message")
    if content is not None and target is not None and content == target.content:
        content = None  # unchanged: not an edit
    if content is not None:
        if target is None:
            raise ForkInvalid("content", "this run has no user message at step 0 to edit")
        if len(content) > MAX_MESSAGE_CHARS:
            raise ForkInvalid("content", f"longer than {MAX_MESSAGE_CHARS} characters")
        if "\x00" in content:
            raise ForkInvalid("content", "must not contain NUL characters")
        if not content.strip() and (target.role == Role.USER or not target.tool_calls):
            raise ForkInvalid("content", f"the {target.role} message must not be empty")
    version = _fork_version(run=run, number=agent_version, model=model, actor=actor)
    origin = run.session
    prefix = _fork_prefix(run=run, own=own)
    copied = prefix + own
    first_kept = (prefix[-1].seq if prefix and run.trigger_id else None) or (
        own[0].seq if own else origin.last_seq + 1
    )
    # The summary is reused only if it covers nothing the fork shows verbatim or leaves out.
    reuse_summary = 0 < origin.summary_upto_seq < first_kept
    fork = Session.objects.create(
        agent=run.agent,  # the session's may have moved on: a transfer after this turn
        external_user=origin.external_user,
        title=f"Fork of {origin.title or str(origin.pk)[:8]} at step {step}"[:200],
        created_by=actor if actor and actor.is_authenticated else None,
        forked_from=origin,
        sandbox=True,  # a developer's replay, not the end user's conversation
        fork_tools=ForkTools.ALLOW if allow_side_effects else ForkTools.REPLAY,
        scratchpad=_fork_scratchpad(copied=copied),
        last_seq=len(copied),
        agent_version=version,
    )
    new_run = Run.objects.create(
        session=fork,
        agent=run.agent,
        agent_version=version or run.agent.published_version,
        step=step,
        model_calls=sum(1 for m in own if m.role == Role.ASSISTANT),
        forked_from=run,
        forked_at_step=step,
    )
    own_ids = {m.pk for m in own}
    messages, trigger, summary_upto = [], None, 0
    for seq, m in enumerate(copied, start=1):
        text = content if content is not None and m.pk == target.pk else m.content  # type: ignore[union-attr]
        copy = Message(
            session=fork,
            seq=seq,
            role=m.role,
            content=text,
            tool_calls=m.tool_calls,
            tool_call_id=m.tool_call_id,
            name=m.name,
            run=new_run if m.pk in own_ids else None,
            step=m.step if m.pk in own_ids else None,
            token_count=m.token_count
            if text == m.content
            else message_tokens(content=text, tool_calls=m.tool_calls),
            author_id=m.author_id,
            end_user=m.end_user,
        )
        messages.append(copy)
        if m.pk == run.trigger_id:
            trigger = copy
        if reuse_summary and m.seq <= origin.summary_upto_seq:
            summary_upto = seq
    Message.objects.bulk_create(messages)
    edit: dict[str, object] = {}
    edited_call: tuple[int | None, str] | None = None
    if content is not None and target is not None:
        edited = messages[[m.pk for m in copied].index(target.pk)]
        edit = {"seq": edited.seq, "role": target.role, "original": target.content}
        if target.role == Role.TOOL:
            edited_call = (target.step, target.tool_call_id)
    # The record of a call whose result was edited holds the edited result, as the
    # conversation does (the original stays in the run's `fork_edit`).
    ToolCall.objects.bulk_create(
        ToolCall(
            run=new_run,
            step=c.step,
            call_id=c.call_id,
            tool_name=c.tool_name,
            tool_version=c.tool_version,
            arguments=c.arguments,
            status=c.status,
            idempotent=c.idempotent,
            result=content
            if content is not None and (c.step, c.call_id) == edited_call
            else c.result,
            error_class=c.error_class,
            attempts=c.attempts,
            finished_at=c.finished_at,
            decided_by_id=c.decided_by_id,
            decided_at=c.decided_at,
            decision_note=c.decision_note,
            fork_outcome=ForkOutcome.EDITED
            if (c.step, c.call_id) == edited_call
            else ForkOutcome.COPIED,
        )
        for c in ToolCall.objects.filter(run=run, step__lte=step).order_by("step", "pk")
    )
    Run.objects.filter(pk=new_run.pk).update(trigger=trigger, fork_edit=edit)
    new_run.trigger, new_run.fork_edit = trigger, edit
    if reuse_summary:
        Session.objects.filter(pk=fork.pk).update(
            summary=origin.summary, summary_upto_seq=summary_upto
        )
    # A fork is a sandbox: the webhooks tell integrators nothing of it.
    event_record(
        kind="session.created",
        actor=actor,
        session=fork,
        audit="run.fork",
        target=str(run.pk),
        detail={
            "step": step,
            "edited": bool(edit),
            "allow_side_effects": allow_side_effects,
            "agent_version": version.number if version else None,
        },
        ops=False,
    )
    run_enqueue(run=new_run)
    status_broadcast(new_run)
    return new_run
