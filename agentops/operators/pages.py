"""What the inbox's pages share: a handoff looked up for a page, and the operator's draft reply."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from agentops.models import Handoff
from agentops.operators.access import handoff_workable_by
from agentops.operators.queue.selectors import handoff_get
from tracing.platform.web import HtmxHttpRequest

DRAFTS_KEY = "handoff_drafts"


def draft_set(request: HtmxHttpRequest, handoff_id: int, draft: str | None) -> None:
    """The operator's draft reply waits in their server-side session, never in a URL
    (browser history, access logs): it is the customer's conversation."""
    drafts = dict(request.session.get(DRAFTS_KEY, {}))
    if draft:
        drafts[str(handoff_id)] = draft[:32000]
    else:
        drafts.pop(str(handoff_id), None)
    request.session[DRAFTS_KEY] = drafts


def handoff_or_404(handoff_id: int) -> Handoff:
    handoff = handoff_get(handoff_id=handoff_id)
    if handoff is None:
        raise Http404("No such handoff.")
    return handoff


def handoff_visible(request: HtmxHttpRequest, handoff_id: int) -> Handoff:
    handoff = handoff_or_404(handoff_id)
    if not handoff_workable_by(handoff=handoff, user=request.user):
        raise PermissionDenied("Another operator has this conversation.")
    return handoff
