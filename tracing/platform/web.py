"""Web helpers shared by the views of every app: the htmx request type, the one safe-redirect
rule, the htmx form-error status, the pager's query string and whole-number parameters. They live in `tracing`, the
bottom layer, so `memory` and `tools` use them without importing `agentops`."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """The request type of views that read `request.htmx` (set by HtmxMiddleware)."""

    htmx: HtmxDetails


def is_htmx(request: HttpRequest) -> bool:
    return bool(getattr(request, "htmx", False))


def next_url(request: HttpRequest, *, fallback: str) -> str:
    """The form's `next` when it stays on this site (host and scheme) and holds no control
    character (a NUL in a Location header fails in the server), else `fallback`."""
    target = request.POST.get("next", "") or request.GET.get("next", "")
    if (
        target
        and target.isprintable()
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return target
    return fallback


def error_status(request: HttpRequest, status: int = 400) -> int:
    """The status of an answer that shows a form's errors: 200 for an htmx partial, `status`
    for a full page. (A partial answered with a 4xx is shown too: static/agentops/app.js lets
    htmx swap every 4xx answer that is not a whole page.)"""
    return 200 if is_htmx(request) else status


def page_query(request: HttpRequest) -> str:
    """The request's query string without `page`, for the pager's links (`_pager.html`)."""
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


MAX_DB_INT = 2**31 - 1  # a Postgres integer column


def id_param(raw: str) -> int | None:
    """A row id or number from a query or form value: an ASCII whole number from 1 to what a
    Postgres integer holds, else None ("²" and "99999999999" are no ids)."""
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_DB_INT else None
