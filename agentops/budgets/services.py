"""Budgets at the door and as runs spend.

Admission (`budget_admit`, in the post's transaction): for each budget that applies, one
conditional upsert of the subject's row for the current window: a runs budget counts the
run at once (`used + 1 <= limit`); a token or cost budget reserves what a run is expected to
spend (`Budget.run_estimate`) while `used + reserved < limit`. The row stays locked until
the post commits, so posts at once are admitted one after the other against what the ones
before reserved: a hundred runs started against a nearly spent budget overspend it by at most
one run's worth (what the last one admitted spends beyond what was left). A run then charges
what it spends (`RunSpend.flush`, one statement a step, only for runs that hold a
reservation), and its reservation is released when it ends (`RunSpend.release`; runs that
ended otherwise by `budget_holds_release_ended`).
"""

from __future__ import annotations

import calendar
import json
import math
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from agentops.budgets.models import (
    Budget,
    BudgetAction,
    BudgetHold,
    BudgetMetric,
    BudgetPeriod,
    BudgetScope,
    BudgetUsage,
)
from tracing.platform.errors import Invalid, NotFound, TooMany
from tracing.platform.logs import get_logger

if TYPE_CHECKING:
    from agentops.auth import Actor
    from agentops.models import Session

log = get_logger(__name__)

# While reservations in flight (not spending) hold a budget full, try again this soon.
RESERVED_RETRY_SECONDS = 5
WIDGET_KEY_ID = re.compile(r"key:(\d+):")


class BudgetExceeded(TooMany):
    """A budget refuses the new run (429): `retry_after` is when its window ends, or soon
    when only runs in flight hold it full."""

    def __init__(self, budget: Budget, *, retry_after: int) -> None:
        super().__init__(
            f"budget {budget.name!r} is spent ({budget_describe(budget)}); "
            f"try again in {retry_after} s",
            retry_after=retry_after,
            budget=budget.name,
        )
        self.budget = budget

    @property
    def sentence(self) -> str:
        """For an end user: no figures, no names."""
        wait = self.retry_after or 0
        when = f"in {wait} seconds" if wait < 120 else f"in about {math.ceil(wait / 60)} minutes"
        if wait >= 2 * 3600:
            when = f"in about {round(wait / 3600)} hours"
        return f"This chat has reached its usage limit for now. Please try again {when}."


def budget_describe(budget: Budget) -> str:
    unit = {"runs": "runs", "tokens": "tokens", "cost": "USD"}[budget.metric]
    return f"{budget.limit.normalize():f} {unit} {budget.get_period_display()}"


# -- windows ---------------------------------------------------------------------------------
def window_start(*, period: str, now: datetime) -> datetime:
    now = now.astimezone(UTC)
    if period == BudgetPeriod.MINUTE:
        return now.replace(second=0, microsecond=0)
    if period == BudgetPeriod.DAY:
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def window_end(*, period: str, start: datetime) -> datetime:
    if period == BudgetPeriod.MINUTE:
        return start + timedelta(minutes=1)
    if period == BudgetPeriod.DAY:
        return start + timedelta(days=1)
    return start + timedelta(days=calendar.monthrange(start.year, start.month)[1])


# -- admission -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Subjects:
    """Who a post spends for: the agent, the end user, the API key, the widget key."""

    agent_id: int
    end_user: str = ""
    api_key_id: int | None = None

    @property
    def widget_key_id(self) -> int | None:
        match = WIDGET_KEY_ID.match(self.end_user)
        return int(match.group(1)) if match else None

    def of(self, scope: str) -> str:
        """The subject of `scope` ("" when the post has none: the budget does not apply)."""
        if scope == BudgetScope.AGENT:
            return str(self.agent_id)
        if scope == BudgetScope.END_USER:
            return self.end_user
        if scope == BudgetScope.API_KEY:
            return str(self.api_key_id) if self.api_key_id is not None else ""
        key_id = self.widget_key_id
        return str(key_id) if key_id is not None else ""


@dataclass
class Admission:
    """What a post reserved: (usage row, metric, amount) per token or cost budget, recorded
    against the run once it exists; `handoff`: a budget at its limit says hand off."""

    holds: list[tuple[int, str, Decimal]] = field(default_factory=list)
    handoff: BudgetExceeded | None = None


# One statement per budget that applies: the subject's row for the window, counted or
# reserved only while the budget allows (else no row comes back).
_ADMIT = """
INSERT INTO agentops_budgetusage (budget_id, subject, window_start, used, reserved)
VALUES (%(budget)s, %(subject)s, %(start)s, %(count)s, %(reserve)s)
ON CONFLICT (budget_id, subject, window_start) DO UPDATE
   SET used = agentops_budgetusage.used + EXCLUDED.used,
       reserved = agentops_budgetusage.reserved + EXCLUDED.reserved
 WHERE CASE WHEN EXCLUDED.used > 0
            THEN agentops_budgetusage.used + EXCLUDED.used <= %(limit)s
            ELSE agentops_budgetusage.used + agentops_budgetusage.reserved < %(limit)s END
RETURNING id
"""


def budget_admit(*, session: Session, api_key_id: int | None = None) -> Admission:
    """Count or reserve the new run against every budget that applies to the post (in the
    caller's transaction: a refusal raised here rolls back what was reserved before it).
    BudgetExceeded for a refusing budget set to refuse (those are asked first); a refusing
    budget set to hand off is returned in `handoff`, and what the others counted or
    reserved for the post is given back (no run starts).

    A token or cost budget reserves a run's worth (`Budget.run_estimate`); with nothing
    learned yet, its whole limit, so runs go one at a time until the first has settled."""
    subjects = Subjects(
        agent_id=session.agent_id, end_user=session.external_user, api_key_id=api_key_id
    )
    budgets = [
        b
        for b in Budget.objects.filter(
            Q(agent_id=session.agent_id) | Q(agent_id__isnull=True), enabled=True
        )
        if subjects.of(b.scope) and b.subject in ("", subjects.of(b.scope))
    ]
    budgets.sort(key=lambda b: b.on_limit != BudgetAction.REFUSE)
    admission = Admission()
    counted: list[tuple[int, int, Decimal]] = []  # (usage row, runs, reserved) for an undo
    now = timezone.now()
    for budget in budgets:
        subject = subjects.of(budget.scope)
        start = window_start(period=budget.period, now=now)
        counts = budget.metric == BudgetMetric.RUNS
        reserve = Decimal(0) if counts else (budget.run_estimate or budget.limit)
        row_id = None
        if budget.limit >= (1 if counts else Decimal("0.000001")):
            with connection.cursor() as cursor:
                cursor.execute(
                    _ADMIT,
                    {
                        "budget": budget.pk,
                        "subject": subject,
                        "start": start,
                        "count": 1 if counts else 0,
                        "reserve": reserve,
                        "limit": budget.limit,
                    },
                )
                row = cursor.fetchone()
            row_id = row[0] if row else None
        if row_id is None:
            refusal = BudgetExceeded(
                budget, retry_after=_retry_after(budget=budget, subject=subject, start=start)
            )
            if budget.on_limit == BudgetAction.HANDOFF:
                _admission_undo(counted=counted)
                return Admission(handoff=refusal)
            raise refusal
        counted.append((row_id, 1 if counts else 0, reserve))
        if not counts:
            admission.holds.append((row_id, budget.metric, reserve))
    return admission


def _admission_undo(*, counted: list[tuple[int, int, Decimal]]) -> None:
    """Give back what a post counted and reserved (its rows are still locked by it)."""
    if not counted:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE agentops_budgetusage AS u
               SET used = u.used - v.runs, reserved = GREATEST(u.reserved - v.reserved, 0)
              FROM unnest(%s::bigint[], %s::numeric[], %s::numeric[]) AS v(id, runs, reserved)
             WHERE u.id = v.id
            """,
            [[c[0] for c in counted], [c[1] for c in counted], [c[2] for c in counted]],
        )


def _retry_after(*, budget: Budget, subject: str, start: datetime) -> int:
    """Seconds to the window's end when the budget is spent; soon when only reservations of
    runs in flight fill it (they release what they do not spend)."""
    usage = BudgetUsage.objects.filter(budget=budget, subject=subject, window_start=start).first()
    end = window_end(period=budget.period, start=start)
    until_end = max(1, math.ceil((end - timezone.now()).total_seconds()))
    spent = usage is None or usage.used >= budget.limit or budget.metric == BudgetMetric.RUNS
    return until_end if spent else min(until_end, RESERVED_RETRY_SECONDS)


def budget_holds_record(*, run_id: uuid.UUID, admission: Admission) -> None:
    """The run's reservations, released as it spends and when it ends (one statement)."""
    if admission.holds:
        BudgetHold.objects.bulk_create(
            [
                BudgetHold(run_id=run_id, usage_id=usage_id, metric=metric, remaining=amount)
                for usage_id, metric, amount in admission.holds
            ]
        )


# -- spending --------------------------------------------------------------------------------
# A step's spend: the holds' new figures and the usage rows' charges, one statement. Like
# the breaker's rows, committed without waiting for the disk (1-4 ms a commit): a Postgres
# crash may lose the last fraction of a second of them; a hold left behind is released by
# the sweep (without the charge it missed).
_SPEND = """
WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
v AS (
    SELECT x.* FROM unnest(%s::bigint[], %s::bigint[], %s::numeric[], %s::numeric[],
                           %s::numeric[], %s::numeric[])
                    AS x(hold_id, usage_id, spend, released, remaining, spent), relaxed
), h AS (
    UPDATE agentops_budgethold AS h SET remaining = v.remaining, spent = v.spent
      FROM v WHERE h.id = v.hold_id
)
UPDATE agentops_budgetusage AS u
   SET used = u.used + v.spend, reserved = GREATEST(u.reserved - v.released, 0)
  FROM v WHERE u.id = v.usage_id
"""

# The run ended: its last charges, what it did not use given back, its budgets taught a
# run's size (never below the last run's, slowly down from a larger one), the holds gone.
# Only for the holds this statement deleted: a hold released already (by the sweep, by
# another job of the run) is not given back twice.
_RELEASE = """
WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
v AS (
    SELECT x.* FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::numeric[],
                           %s::numeric[], %s::numeric[])
                    AS x(hold_id, usage_id, budget_id, spend, released, spent), relaxed
), gone AS (
    DELETE FROM agentops_budgethold AS h USING v WHERE h.id = v.hold_id RETURNING h.id
), w AS (
    SELECT v.* FROM v JOIN gone ON gone.id = v.hold_id
), u AS (
    UPDATE agentops_budgetusage AS u
       SET used = u.used + w.spend, reserved = GREATEST(u.reserved - w.released, 0)
      FROM w WHERE u.id = w.usage_id
), b AS (
    UPDATE agentops_budget AS b
       SET run_estimate = GREATEST(w.spent, b.run_estimate * 0.8 + w.spent * 0.2)
      FROM w WHERE b.id = w.budget_id AND w.spent > 0
)
SELECT count(*) FROM gone
"""

# A run's reservations, as the run's own read brings them (agentops.runtime.loop): a JSON
# list of [hold, usage, budget, metric, remaining, spent], empty when it holds none.
# In the order admission locks the usage rows (refusing budgets first, then by name): spend and
# release lock them in the same order, so the two never wait on each other in a circle.
HOLDS_OF_RUN = """
SELECT COALESCE(jsonb_agg(jsonb_build_array(h.id, h.usage_id, u.budget_id, h.metric,
                                            h.remaining::text, h.spent::text)
                           ORDER BY b.on_limit <> 'refuse', b.name), '[]'::jsonb)
  FROM agentops_budgethold h JOIN agentops_budgetusage u ON u.id = h.usage_id
       JOIN agentops_budget b ON b.id = u.budget_id
 WHERE h.run_id = agentops_run.id
"""

# Spend within what a run reserved is already counted (as reserved): it is written at most
# this often; spend beyond a reservation is written at once.
FLUSH_EVERY_SECONDS = 5.0


@dataclass
class HeldBudget:
    hold_id: int
    usage_id: int
    budget_id: int
    metric: str
    remaining: Decimal
    spent: Decimal
    unflushed: Decimal = Decimal(0)
    released: Decimal = Decimal(0)


class RunSpend:
    """A run's reservations, charged as its model calls spend: in memory per call, written
    at a checkpoint when the run has spent past a reservation or FLUSH_EVERY_SECONDS after
    the last write (`flush`, one statement), and released when the run ends (`release`, one
    statement). `holds`: as HOLDS_OF_RUN read them with the run; else they are read here."""

    def __init__(self, *, run_id: uuid.UUID, holds: list[list[Any]] | None = None) -> None:
        self.run_id = run_id
        if holds is None:
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT ({HOLDS_OF_RUN}) FROM agentops_run WHERE id = %s",  # noqa: S608 - a constant
                    [run_id],
                )
                row = cursor.fetchone()
            holds = (row[0] if row else None) or []
            if isinstance(holds, str):
                holds = json.loads(holds)
        self.held = [
            HeldBudget(
                hold_id=int(hold_id),
                usage_id=int(usage_id),
                budget_id=int(budget_id),
                metric=str(metric),
                remaining=Decimal(str(remaining)),
                spent=Decimal(str(spent)),
            )
            for hold_id, usage_id, budget_id, metric, remaining, spent in holds
        ]
        self.flushed_at = time.monotonic()

    @property
    def wants_cost(self) -> bool:
        return any(h.metric == BudgetMetric.COST for h in self.held)

    def add(self, *, tokens: int, cost: Decimal) -> None:
        for held in self.held:
            amount = Decimal(tokens) if held.metric == BudgetMetric.TOKENS else cost
            release = min(held.remaining, amount)
            held.remaining -= release
            held.released += release
            held.spent += amount
            held.unflushed += amount

    def flush(self, *, now: bool = False) -> None:
        """Write what the run spent since the last write, if it spent past a reservation (or
        `now`, or FLUSH_EVERY_SECONDS after the last write)."""
        rows = [h for h in self.held if h.unflushed or h.released]
        if not rows:
            return
        beyond = any(h.unflushed > h.released for h in rows)
        due = time.monotonic() - self.flushed_at >= FLUSH_EVERY_SECONDS
        if not (now or beyond or due):
            return
        with connection.cursor() as cursor:
            cursor.execute(
                _SPEND,
                [
                    [h.hold_id for h in rows],
                    [h.usage_id for h in rows],
                    [h.unflushed for h in rows],
                    [h.released for h in rows],
                    [h.remaining for h in rows],
                    [h.spent for h in rows],
                ],
            )
        for held in rows:
            held.unflushed = held.released = Decimal(0)
        self.flushed_at = time.monotonic()

    def release(self) -> None:
        """The run ended: charge what is left to charge, give back what it did not use, and
        teach its budgets a run's size; the holds go."""
        if not self.held:
            return
        held = self.held
        with connection.cursor() as cursor:
            cursor.execute(
                _RELEASE,
                [
                    [h.hold_id for h in held],
                    [h.usage_id for h in held],
                    [h.budget_id for h in held],
                    [h.unflushed for h in held],
                    [h.released + h.remaining for h in held],
                    [h.spent for h in held],
                ],
            )
        self.held = []


# Runs that ended a while ago (their driver releases at once what it holds) with holds.
_HOLDS_OF_ENDED = """
SELECT h.run_id FROM agentops_budgethold h JOIN agentops_run r ON r.id = h.run_id
 WHERE r.status NOT IN ('queued', 'running', 'waiting')
   AND COALESCE(r.finished_at, r.created_at) < now() - make_interval(secs => %s)
 GROUP BY h.run_id LIMIT 200
"""
ENDED_RELEASE_AFTER_SECONDS = 30


def budget_holds_release_ended() -> int:
    """Release the reservations of runs that ended without their driver releasing them
    (cancelled while queued, failed by the reconciler, a worker that died). Returns how
    many runs' holds went."""
    with connection.cursor() as cursor:
        cursor.execute(_HOLDS_OF_ENDED, [ENDED_RELEASE_AFTER_SECONDS])
        ended = [row[0] for row in cursor.fetchall()]
    for run_id in ended:
        RunSpend(run_id=run_id).release()
    return len(ended)


# -- management ------------------------------------------------------------------------------
BUDGET_FIELDS = ("name", "scope", "agent", "subject", "metric", "period", "limit", "on_limit")


def _budget_check(budget: Budget) -> None:
    try:
        budget.full_clean(exclude=["run_estimate"])
    except ValidationError as exc:
        errors = exc.message_dict
        name = next(iter(errors))
        raise Invalid(" ".join(errors[name]), field=name) from exc
    if budget.metric == BudgetMetric.RUNS and budget.period != BudgetPeriod.MINUTE:
        raise Invalid("runs are limited per minute", field="period")
    if budget.metric != BudgetMetric.RUNS and budget.period == BudgetPeriod.MINUTE:
        raise Invalid("tokens and cost are limited per day or per month", field="period")


@transaction.atomic
def budget_create(*, actor: Actor, **values: Any) -> Budget:
    budget = Budget(**values)
    _budget_check(budget)
    budget.save()
    _audit(actor=actor, action="budget.create", budget=budget)
    return budget


@transaction.atomic
def budget_update(*, budget: Budget, actor: Actor, **values: Any) -> Budget:
    for name, value in values.items():
        setattr(budget, name, value)
    _budget_check(budget)
    budget.save()
    _audit(actor=actor, action="budget.update", budget=budget)
    return budget


@transaction.atomic
def budget_delete(*, budget_id: int, actor: Actor) -> None:
    budget = Budget.objects.filter(pk=budget_id).first()
    if budget is None:
        raise NotFound(f"no budget {budget_id}")
    _audit(actor=actor, action="budget.delete", budget=budget)
    budget.delete()


def _audit(*, actor: Actor, action: str, budget: Budget) -> None:
    from agentops.models import AuditEntry

    AuditEntry.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target=budget.name[:200],
        detail={"budget": budget.pk, "limit": f"{budget_describe(budget)}"},
    )
