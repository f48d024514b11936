"""Satisfaction (CSAT): the end user rates the conversation an operator closed."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from agentops.events import event_record
from agentops.models import Handoff, HandoffRating, HandoffResolution, HandoffStatus
from agentops.operators.access import HandoffConflict
from tracing.platform.errors import Invalid

MAX_RATING_COMMENT = 2000


@transaction.atomic
def handoff_rate(
    *, session_id: uuid.UUID | str, score: Any, comment: str = "", rated_by: Any = None
) -> HandoffRating:
    """The end user rates the conversation an operator closed (CSAT): 1 to 5 and a comment.
    One rating per closed handoff; rating again replaces it (the end user changed their mind).
    Bad input is a ValueError naming the field; a conversation not closed by an operator, a
    HandoffConflict."""
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise Invalid("give a whole number from 1 to 5", field="score")
    comment = (comment or "").strip()
    if len(comment) > MAX_RATING_COMMENT:
        raise Invalid(f"at most {MAX_RATING_COMMENT} characters", field="comment")
    if "\x00" in comment:
        raise Invalid("must not contain NUL characters", field="comment")
    handoff = (
        Handoff.objects.select_for_update(of=("self",))
        .select_related("session")
        .filter(
            session_id=session_id,
            status=HandoffStatus.RESOLVED,
            resolution=HandoffResolution.CLOSED,
        )
        .order_by("-resolved_at")
        .first()
    )
    if handoff is None:
        raise HandoffConflict("only a conversation an operator closed can be rated")
    rating, created = HandoffRating.objects.update_or_create(
        handoff=handoff,
        defaults={
            "score": score,
            "comment": comment,
            "end_user": handoff.session.external_user,
            "rated_by": rated_by if rated_by is not None and rated_by.is_authenticated else None,
        },
    )
    event_record(
        kind="handoff.rated", handoff=handoff, data={"score": score, "replaced": not created}
    )
    return rating
