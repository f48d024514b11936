"""Feedback on runs and messages: one verdict per person per target, replaced when given again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import transaction

from agentops.models import Feedback, FeedbackRating, Message, Run

if TYPE_CHECKING:
    from agentops.auth import Actor

MAX_COMMENT_CHARS = 2000


@transaction.atomic
def feedback_give(
    *,
    author: Actor,
    rating: str,
    run: Run | None = None,
    message: Message | None = None,
    score: object = None,
    comment: str = "",
) -> Feedback:
    """Score a run or a message (thumbs up/down, an optional 1-5 score, a comment). The
    author's earlier feedback on the same target is replaced. Errors name the field."""
    errors: dict[str, list[str]] = {}
    if author is None or not author.is_authenticated:
        errors["author"] = ["Feedback needs a signed-in person."]
    if (run is None) == (message is None):
        errors["target"] = ["Score either a run or a message."]
    if rating not in FeedbackRating.values:
        errors["rating"] = ["Give 'up' or 'down'."]
    if score is not None and (
        not isinstance(score, int) or isinstance(score, bool) or not 1 <= score <= 5
    ):
        errors["score"] = ["Give a whole number from 1 to 5, or none."]
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        errors["comment"] = [f"Give at most {MAX_COMMENT_CHARS} characters."]
    elif "\x00" in comment:
        errors["comment"] = ["The comment must not contain NUL characters."]
    if errors:
        raise ValidationError(errors)
    values = {"rating": rating, "score": score, "comment": comment}
    user: Any = author
    if message is not None:
        feedback, _ = Feedback.objects.update_or_create(
            author=user, message=message, defaults={**values, "run_id": message.run_id}
        )
    else:
        feedback, _ = Feedback.objects.update_or_create(
            author=user, run=run, message=None, defaults=values
        )
    return feedback
