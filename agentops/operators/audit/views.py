"""The audit log page (admins)."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from agentops.auth import role_required
from agentops.operators.audit import selectors
from tracing.platform.web import HtmxHttpRequest, error_status, page_query


@role_required("admin")
@require_GET
def audit(request: HtmxHttpRequest) -> HttpResponse:
    action = request.GET.get("action", "")
    actor = request.GET.get("actor", "").strip()
    session_id = request.GET.get("session", "").strip()
    error = ""
    if session_id:
        import uuid

        try:
            session_id = str(uuid.UUID(session_id))
        except ValueError:
            error = "session: not a session id (a UUID)."
            session_id = ""
    entries = selectors.audit_entries(action=action, actor=actor, session_id=session_id or None)
    page = Paginator(entries, 100).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "actions": selectors.audit_actions(),
        "action": action,
        "actor": actor,
        "session_filter": request.GET.get("session", ""),
        "error": error,
        "query": page_query(request),
        "filtered": bool(action or actor or session_id),
    }
    template = "operators/audit.html#entries" if request.htmx else "operators/audit.html"
    return render(request, template, context, status=error_status(request) if error else 200)
