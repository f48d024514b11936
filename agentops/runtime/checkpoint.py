"""Durable state of a run: claims, fenced checkpoints and status changes.

Every write a worker makes for a run goes through `fenced_update` inside the step's
transaction: it only succeeds while the run is still `running` under the worker's
epoch, so an orphaned job process can never write after another worker took over.
A checkpoint stores what changed in one step (new messages, counters), never the
whole transcript again, and is written by `step_commit` in one SQL statement.
"""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from django.db import connection, models, transaction
from django.utils import timezone

from agentops.conversation import message_serialise, run_status_serialise
from agentops.events import event_record
from agentops.models import Message, Run, RunStatus, ToolCall
from agentops.runtime.errors import LeaseLost
from tracing.models import Span

if TYPE_CHECKING:
    from agentops.auth import Actor

# Jobs pass ids as strings; the ORM hands back UUIDs.
RunId = uuid.UUID | str
SessionId = uuid.UUID | str


def run_claim(*, run_id: RunId, worker: str, job_id: str = "") -> int | None:
    """Take a queued run for this worker; returns the new epoch, or None if not ours to run."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE agentops_run
               SET status = 'running', epoch = epoch + 1, worker = %s, heartbeat_at = %s,
                   started_at = COALESCE(started_at, %s), jobs_started = jobs_started + 1,
                   wake_at = NULL, wait_reason = '', job_id = %s
             WHERE id = %s AND status = 'queued'
         RETURNING epoch
            """,
            [worker, now, now, job_id, run_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def fenced_update(*, run_id: RunId, epoch: int, **fields: Any) -> None:
    """Update the run only while this worker still holds it; raise LeaseLost otherwise."""
    fields.setdefault("heartbeat_at", timezone.now())
    updated = Run.objects.filter(pk=run_id, epoch=epoch, status=RunStatus.RUNNING).update(**fields)
    if not updated:
        raise LeaseLost(f"run {run_id} is no longer held at epoch {epoch}")


def heartbeat(*, run_id: RunId, epoch: int) -> bool:
    return bool(
        Run.objects.filter(pk=run_id, epoch=epoch, status=RunStatus.RUNNING).update(
            heartbeat_at=timezone.now()
        )
    )


def runs_heartbeat(*, held: list[tuple[RunId, int]]) -> set[tuple[RunId, int]]:
    """`heartbeat` for many runs in one statement: returns the (run, epoch) pairs still held."""
    if not held:
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE agentops_run AS r SET heartbeat_at = %s
              FROM unnest(%s::uuid[], %s::integer[]) AS h(id, epoch)
             WHERE r.id = h.id AND r.epoch = h.epoch AND r.status = 'running'
         RETURNING r.id, r.epoch
            """,
            [timezone.now(), [run_id for run_id, _ in held], [epoch for _, epoch in held]],
        )
        return {(row[0], row[1]) for row in cursor.fetchall()}


def run_time_out(*, run_id: RunId, epoch: int, seconds: float) -> bool:
    """End a run that went over its job's time limit as failed (fenced: False if it was no
    longer held). Its job, if still busy, stops at its next write."""
    message = f"the run went over its job's time limit of {seconds:g} s (RUN_JOB_TIMEOUT)"
    try:
        with transaction.atomic():
            fenced_update(
                run_id=run_id,
                epoch=epoch,
                status=RunStatus.FAILED,
                finished_at=timezone.now(),
                error_class="timeout",
                error_message=message,
            )
            status_broadcast(Run.objects.select_related("agent").get(pk=run_id))
    except LeaseLost:
        return False
    return True


def messages_append(*, session_id: SessionId, messages: list[Message]) -> list[Message]:
    """Give the messages the session's next sequence numbers and insert them (one statement)."""
    if not messages:
        return []
    ctes, params = _append_ctes(session_id=session_id, messages=messages, fenced=False)
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(ctes)} SELECT {_APPENDED}", params)
        (rows,) = cursor.fetchone()
    _appended(session_id=session_id, messages=messages, rows=rows)
    return messages


def step_commit(
    *,
    run_id: RunId,
    epoch: int,
    session_id: SessionId,
    fields: dict[str, Any],
    messages: list[Message],
    tool_calls: list[ToolCall],
    spans: list[Span],
    unless_taken_over: bool = False,
) -> int | None:
    """Store one step — run fields, new messages numbered from the session's counter, tool
    call records, trace records — all or nothing, and only while this worker holds the run
    at `epoch` (LeaseLost otherwise). Gives the messages and records their ids, and returns
    the id of the operator who asked to take the conversation over, if one did (read in the
    same statement: the run learns of a takeover at each checkpoint at no extra cost).

    `unless_taken_over` (a run's last write): nothing is stored if an operator asked to take
    the conversation over, and their id is returned. The statement's row lock does what a
    `SELECT ... FOR UPDATE` first would: a takeover asked for meanwhile waits, then finds the
    run ended.

    One statement (data-modifying CTEs, rows passed as JSON) rather than a transaction of
    six: a step costs one round trip and one commit.
    """
    now = timezone.now()
    fields = {"heartbeat_at": now, **fields}
    columns = [_concrete(Run, name) for name in fields]
    ctes = [
        "held AS (UPDATE agentops_run SET "  # noqa: S608 (names from the model, values are parameters)
        + ", ".join(f"{_quoted(f)} = %s" for f in columns)
        + " WHERE id = %s AND epoch = %s AND status = 'running'"
        + (" AND takeover_by_id IS NULL" if unless_taken_over else "")
        + " RETURNING id, takeover_by_id)"
    ]
    params = [
        f.get_db_prep_save(v, connection) for f, v in zip(columns, fields.values(), strict=True)
    ]
    params += [run_id, epoch]
    results = ["(SELECT count(*) FROM held)", "(SELECT takeover_by_id FROM held)"]
    if messages:
        appending, appending_params = _append_ctes(
            session_id=session_id, messages=messages, fenced=True
        )
        ctes += appending
        params += appending_params
        results.append(_APPENDED)
    if tool_calls:
        ctes.append(f"calls AS ({_TOOL_CALLS.sql})")
        params.append(_TOOL_CALLS.rows(tool_calls))
        results.append("(SELECT json_agg(json_build_array(id, step, call_id)) FROM calls)")
    if spans:
        ctes.append(f"spans AS ({_SPANS.sql})")
        params.append(_SPANS.rows(spans))
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {', '.join(ctes)} SELECT {', '.join(results)}", params)
        held, takeover_by, *stored = cursor.fetchone()
    if not held:
        if unless_taken_over:
            asked = (
                Run.objects.filter(pk=run_id, epoch=epoch, status=RunStatus.RUNNING)
                .values_list("takeover_by_id", flat=True)
                .first()
            )
            if asked is not None:
                return int(asked)
        raise LeaseLost(f"run {run_id} is no longer held at epoch {epoch}")
    if messages:
        _appended(session_id=session_id, messages=messages, rows=stored.pop(0))
    if tool_calls:
        ids = {(step, call_id): pk for pk, step, call_id in stored.pop(0)}
        for record in tool_calls:
            record.pk = ids[(record.step, record.call_id)]
            record._state.adding = False
    return takeover_by


_APPENDED = "(SELECT json_agg(json_build_array(id, seq)) FROM messages)"


def _append_ctes(
    *, session_id: SessionId, messages: list[Message], fenced: bool
) -> tuple[list[str], list[Any]]:
    """`numbered` moves the session's counter on (only if `held` has the run, when fenced);
    `messages` inserts the messages numbered from it, returning their ids and numbers."""
    for message in messages:
        message.session_id = session_id
    source = " FROM held" if fenced else ""
    ctes = [
        "numbered AS (UPDATE agentops_session AS s SET last_seq = s.last_seq + %s,"  # noqa: S608
        f" updated_at = %s{source} WHERE s.id = %s RETURNING s.last_seq - %s AS before)",
        f"messages AS ({_MESSAGES.sql})",
    ]
    count = len(messages)
    return ctes, [count, timezone.now(), session_id, count, _MESSAGES.rows(messages)]


def _appended(*, session_id: SessionId, messages: list[Message], rows: list[list[Any]]) -> None:
    """Give the stored messages their ids and numbers, and send them to the session's stream."""
    for message, (pk, seq) in zip(messages, sorted(rows, key=lambda row: row[1]), strict=True):
        message.pk, message.seq = pk, seq
        message._state.adding = False
    for message in messages:
        event_record(
            kind="message",
            session=session_id,
            data={"message": message_serialise(message)},
            ops=False,
            viewers=True,
        )


def _concrete(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    if not isinstance(field, models.Field) or field.column is None:
        raise TypeError(f"{model.__name__}.{name} is not a column")
    return field


def _quoted(field: models.Field[Any, Any]) -> str:
    return connection.ops.quote_name(field.column or field.name)


class _JsonRowsInsert:
    """`INSERT INTO <model's table> SELECT ... FROM <source>, <rows of a JSON parameter>`.

    The rows carry the model's columns as Django would save them; `computed` columns get an
    SQL expression instead (`r.ordinality` numbers the rows from 1).
    """

    def __init__(
        self,
        model: type[models.Model],
        *,
        source: str,
        computed: dict[str, str] | None = None,
        upsert_on: tuple[str, ...] = (),
        returning: str = "",
    ) -> None:
        computed = computed or {}
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        self.fields = [
            f for f in model._meta.concrete_fields if not f.primary_key and f.column not in computed
        ]
        names = [_quoted(f) for f in self.fields] + [quote(c) for c in computed]
        values = [f"r.{_quoted(f)}" for f in self.fields] + list(computed.values())
        self.sql = (
            f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(values)} FROM {source},"  # noqa: S608
            f" jsonb_populate_recordset(NULL::{table}, %s) WITH ORDINALITY AS r"
        )
        if upsert_on:
            updates = [f"{n} = EXCLUDED.{n}" for n in names if n.strip('"') not in upsert_on]
            self.sql += f" ON CONFLICT ({', '.join(upsert_on)}) DO UPDATE SET {', '.join(updates)}"
        if returning:
            self.sql += f" RETURNING {returning}"

    def rows(self, objects: list[Any]) -> str:
        rows = []
        for obj in objects:
            row = {}
            for field in self.fields:
                # An auto_now_add time set already (a tool call's start) is kept.
                adding = obj._state.adding and getattr(obj, field.attname) is None
                value = field.get_db_prep_save(field.pre_save(obj, adding), connection)
                row[field.column] = _storable(getattr(value, "obj", value))  # Jsonb → its value
            rows.append(row)
        return json.dumps(rows, default=_json_default)


_MESSAGES = _JsonRowsInsert(
    Message,
    source="numbered",
    computed={"seq": "numbered.before + r.ordinality"},
    returning="id, seq",
)
_TOOL_CALLS = _JsonRowsInsert(
    ToolCall, source="held", upsert_on=("run_id", "step", "call_id"), returning="id, step, call_id"
)
_SPANS = _JsonRowsInsert(Span, source="held")


def _storable(value: Any) -> Any:
    """Postgres can store no NUL character, in text or in JSON: untrusted output may hold one."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)  # UUID, Decimal


def status_broadcast(run: Run, *, actor: Actor = None, audit: str = "") -> None:
    """The run's status changed: the ops feed, the session's viewers and the hooks hear it
    (the webhooks' run.succeeded/failed/handed_off); `audit` names the audit row, if any."""
    data = {k: v for k, v in run_status_serialise(run).items() if k != "kind"}
    event_record(kind="run.status", actor=actor, run=run, data=data, audit=audit, viewers=True)
