"""The one fan-out of a state change: `event_record` writes its audit row, sends its live
event and announces it through agentops.hooks, where the features above react (the webhooks
emit theirs, the inbox assigns or wakes, the experiments score). The caller's transaction
holds it all: the audit row and what subscribers write commit with the change or roll back
with it, and the live event leaves only once it commits (tracing.platform.live.broadcast).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agentops.hooks import Event, event_announce
from agentops.models import AuditEntry, Handoff, Run, Session
from tracing.platform.live import OPS_GROUP, broadcast, session_group

if TYPE_CHECKING:
    from agentops.auth import Actor


def audit_record(
    *, actor: Actor, action: str, session: Session | None = None, target: str = "", **detail: Any
) -> AuditEntry:
    """The audit log's one writer (in the caller's transaction). A state change others should
    hear of goes through `event_record`, which calls this."""
    return AuditEntry.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        session=session,
        target=target[:200],
        detail=detail,
    )


def event_record(
    *,
    kind: str,
    actor: Actor = None,
    session: Session | uuid.UUID | str | None = None,
    handoff: Handoff | None = None,
    run: Run | None = None,
    data: Mapping[str, Any] | None = None,
    audit: str = "",
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    ops: bool = True,
    viewers: bool = False,
) -> Event:
    """Record that `kind` happened (a name in agentops.hooks.HOOKS).

    - `audit`: the audit log's action ("" writes no row), about `target` (by default the
      handoff or the run), with `detail`;
    - the live event `{"kind": kind, <the handoff, run and session ids>, **data}` goes to the
      conversation's own stream (`viewers`: the console, the widget; nothing operator-only
      there), then to the operators' feed (`ops`);
    - subscribers get the Event, `detail` included (never sent to a browser).
    """
    data = dict(data or {})
    detail = dict(detail or {})
    session_id = _session_id(session=session, handoff=handoff, run=run)
    if audit:
        audit_record(
            actor=actor,
            action=audit,
            session=Session(pk=session_id) if session_id is not None else None,
            target=target or _target(handoff=handoff, run=run),
            **detail,
        )
    live: dict[str, Any] = {"kind": kind}
    if handoff is not None:
        live["handoff_id"] = handoff.pk
    if run is not None:
        live["run_id"] = str(run.pk)
    if session_id is not None:
        live["session_id"] = str(session_id)
    live.update(data)
    if viewers and session_id is not None:
        broadcast(session_group(session_id), live)
    if ops:
        broadcast(OPS_GROUP, live)
    event = Event(
        kind=kind,
        actor=actor,
        session_id=session_id,
        handoff=handoff,
        run=run,
        data=data,
        detail=detail,
    )
    event_announce(event)
    return event


def _session_id(
    *, session: Session | uuid.UUID | str | None, handoff: Handoff | None, run: Run | None
) -> uuid.UUID | str | None:
    if isinstance(session, Session):
        return session.pk
    if session is not None:
        return session
    if handoff is not None:
        return handoff.session_id
    if run is not None:
        return run.session_id
    return None


def _target(*, handoff: Handoff | None, run: Run | None) -> str:
    if handoff is not None:
        return f"handoff {handoff.pk}"
    if run is not None:
        return str(run.pk)
    return ""
