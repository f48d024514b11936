"""Admission to the database: a request takes its connection before anything else runs."""

from __future__ import annotations

from collections.abc import Callable

from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, JsonResponse
from django.template.loader import render_to_string
from rq.exceptions import NoSuchJobError

from tracing.logs import get_logger

log = get_logger(__name__)

RETRY_AFTER_SECONDS = 2


class DatabaseConnectionMiddleware:
    """Connects first, so that no free connection in the pool within DB_POOL_TIMEOUT, or a
    Postgres that refuses one, answers 503 with Retry-After (JSON under /api/, a page
    elsewhere) instead of a 500 from wherever the request's first query happened to be.
    The connection goes back to the pool when the request ends (CONN_MAX_AGE is 0)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            connection.ensure_connection()
        except DatabaseError as exc:
            cause = exc.__cause__ or exc
            log.warning(
                "database.unavailable",
                path=request.path,
                error_class=type(cause).__name__,
                error=str(cause).strip()[:300],
            )
            return database_unavailable(request)
        return self.get_response(request)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    message = (
        "The database is busy or unavailable; nothing was changed. "
        f"Retry in {RETRY_AFTER_SECONDS} s."
    )
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"error": message}, status=503)
    else:
        response = HttpResponse(
            render_to_string("unavailable.html", {"message": message}), status=503
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class RqDashboardNotFoundMiddleware:
    """django-rq's dashboard (admins only) fails with an exception on a queue, scheduler,
    worker or job that does not exist (an old link, a typed URL, a job that expired):
    `NoSuchJobError`, `IndexError`, a `ValueError` for a worker key, an `assert` on the
    worker. Raised by its own views, they are a 404, not a server error."""

    NOT_FOUND = (NoSuchJobError, IndexError, ValueError, AssertionError)

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        match = request.resolver_match
        view_module = getattr(getattr(match, "func", None), "__module__", "") or ""
        if match is None or not view_module.startswith("django_rq"):
            return None
        if isinstance(exception, self.NOT_FOUND):
            return HttpResponseNotFound(f"Not found: {exception}")
        return None
