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
import math
import re
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
VALUES (%(budget)s, %(subject)s, %(start)s, %(count)s, %(first_reserve)s)
ON CONFLICT (budget_id, subject, window_start) DO UPDATE
   SET used = agentops_budgetusage.used + EXCLUDED.used,
       reserved = agentops_budgetusage.reserved + CASE
           WHEN %(estimate)s > 0 THEN %(estimate)s
           WHEN %(count)s > 0 THEN 0
           ELSE GREATEST(%(limit)s - agentops_budgetusage.used - agentops_budgetusage.reserved, 0)
       END
 WHERE CASE WHEN EXCLUDED.used > 0
            THEN agentops_budgetusage.used + EXCLUDED.used <= %(limit)s
            ELSE agentops_budgetusage.used + agentops_budgetusage.reserved < %(limit)s END
RETURNING id
"""


def budget_admit(*, session: Session, api_key_id: int | None = None) -> Admission:
    """Count or reserve the new run against every budget that applies to the post (in the
    caller's transaction: a refusal raised here rolls back what was reserved before it).
    BudgetExceeded for the first refusing budget set to refuse; a budget set to hand off
    is returned in `handoff` (its reservations are not made)."""
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
    admission = Admission()
    now = timezone.now()
    for budget in budgets:
        subject = subjects.of(budget.scope)
        start = window_start(period=budget.period, now=now)
        counts = budget.metric == BudgetMetric.RUNS
        estimate = Decimal(0) if counts else budget.run_estimate
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
                        "first_reserve": 0 if counts else (estimate or budget.limit),
                        "estimate": estimate,
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
                admission.handoff = admission.handoff or refusal
                continue
            raise refusal
        if not counts:
            admission.holds.append((row_id, budget.metric, estimate or budget.limit))
    return admission


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
_SPEND = """
WITH v(hold_id, usage_id, spend, released, remaining, spent) AS (
    SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::numeric[], %s::numeric[],
                         %s::numeric[], %s::numeric[])
), h AS (
    UPDATE agentops_budgethold AS h SET remaining = v.remaining, spent = v.spent
      FROM v WHERE h.id = v.hold_id
)
UPDATE agentops_budgetusage AS u
   SET used = u.used + v.spend, reserved = GREATEST(u.reserved - v.released, 0)
  FROM v WHERE u.id = v.usage_id
"""


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
    at each checkpoint (`flush`, one statement) and released when the run ends."""

    def __init__(self, *, run_id: uuid.UUID) -> None:
        self.run_id = run_id
        self.held = [
            HeldBudget(
                hold_id=h.pk,
                usage_id=h.usage_id,
                budget_id=h.usage.budget_id,
                metric=h.metric,
                remaining=h.remaining,
                spent=h.spent,
            )
            for h in BudgetHold.objects.filter(run_id=run_id).select_related("usage")
        ]

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

    def flush(self, *, release_all: bool = False) -> None:
        rows = []
        for held in self.held:
            if release_all:
                held.released += held.remaining
                held.remaining = Decimal(0)
            if held.unflushed or held.released:
                rows.append(held)
        if not rows:
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

    def release(self) -> None:
        """The run ended: charge what is left to charge, give back what it did not use, and
        teach its budgets a run's size; the holds go."""
        if not self.held:
            return
        with transaction.atomic():
            self.flush(release_all=True)
            _estimates_learn(spent={h.budget_id: h.spent for h in self.held})
            BudgetHold.objects.filter(pk__in=[h.hold_id for h in self.held]).delete()
        self.held = []


def _estimates_learn(*, spent: dict[int, Decimal]) -> None:
    """A run's size: never below the last run's, and slowly down from a larger one (what the
    next runs reserve at admission)."""
    if not spent:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE agentops_budget AS b
               SET run_estimate = GREATEST(v.spent, b.run_estimate * 0.8 + v.spent * 0.2)
              FROM unnest(%s::bigint[], %s::numeric[]) AS v(id, spent)
             WHERE b.id = v.id AND v.spent > 0
            """,
            [list(spent), list(spent.values())],
        )


_HOLDS_OF_ENDED = """
SELECT h.run_id FROM agentops_budgethold h JOIN agentops_run r ON r.id = h.run_id
 WHERE r.status NOT IN ('queued', 'running', 'waiting') GROUP BY h.run_id LIMIT 200
"""


def budget_holds_release_ended() -> int:
    """Release the reservations of runs that ended without their driver releasing them
    (cancelled while queued, failed by the reconciler, a worker that died). Returns how
    many runs' holds went."""
    with connection.cursor() as cursor:
        cursor.execute(_HOLDS_OF_ENDED)
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
