"""Durable state of a run: claims, fenced checkpoints and status changes.

Every write a worker makes for a run goes through `fenced_update` inside the step's
transaction: it only succeeds while the run is still `running` under the worker's
epoch, so an orphaned job process can never write after another worker took over.
A checkpoint stores what changed in one step (new messages, counters), never the
whole transcript again.
"""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from agentops.models import Message, Run, RunStatus, Session
from agentops.runtime.errors import LeaseLost
from tracing.live import OPS_GROUP, broadcast, session_group


def run_claim(*, run_id: Any, worker: str, job_id: str = "") -> int | None:
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


def fenced_update(*, run_id: Any, epoch: int, **fields: Any) -> None:
    """Update the run only while this worker still holds it; raise LeaseLost otherwise."""
    fields.setdefault("heartbeat_at", timezone.now())
    updated = Run.objects.filter(pk=run_id, epoch=epoch, status=RunStatus.RUNNING).update(**fields)
    if not updated:
        raise LeaseLost(f"run {run_id} is no longer held at epoch {epoch}")


def heartbeat(*, run_id: Any, epoch: int) -> bool:
    return bool(
        Run.objects.filter(pk=run_id, epoch=epoch, status=RunStatus.RUNNING).update(
            heartbeat_at=timezone.now()
        )
    )


def message_event(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "seq": message.seq,
        "role": message.role,
        "content": message.content,
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "run_id": str(message.run_id) if message.run_id else None,
        "author": message.author.get_username() if message.author_id and message.author else None,
        "created_at": message.created_at.isoformat() if message.created_at else None,
    }


def messages_append(*, session_id: Any, messages: list[Message]) -> list[Message]:
    """Give the messages the session's next sequence numbers and insert them (inside a transaction)."""
    if not messages:
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE agentops_session SET last_seq = last_seq + %s, updated_at = %s WHERE id = %s RETURNING last_seq",
            [len(messages), timezone.now(), session_id],
        )
        (last,) = cursor.fetchone()
    first = last - len(messages) + 1
    for offset, message in enumerate(messages):
        message.session_id = session_id
        message.seq = first + offset
    created = Message.objects.bulk_create(messages)
    group = session_group(session_id)
    for message in created:
        broadcast(group, {"kind": "message", "message": message_event(message)})
    return created


def status_event(run: Run) -> dict[str, Any]:
    return {
        "kind": "run.status",
        "run_id": str(run.pk),
        "session_id": str(run.session_id),
        "agent": run.agent.slug if run.agent_id else "",
        "status": run.status,
        "error_class": run.error_class,
        "error_message": run.error_message[:300],
        "wait_reason": run.wait_reason,
        "step": run.step,
    }


def status_broadcast(run: Run) -> None:
    event = status_event(run)
    broadcast(session_group(run.session_id), event)
    broadcast(OPS_GROUP, event)


@transaction.atomic
def session_set_status(*, session_id: Any, status: str) -> None:
    Session.objects.filter(pk=session_id).update(status=status, updated_at=timezone.now())
