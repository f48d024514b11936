"""Admission to the database: a request takes its connection before anything else runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django_rq.queues import get_queue_by_index
from django_rq.settings import get_queues_list
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import validate_job_id

from tracing.platform.logs import get_logger

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
    worker or job that does not exist (an old link, a typed URL, a job that expired): an
    IndexError for a queue index, rq's ValueError for a job id it would never issue, an
    `assert` on a worker. Those URL parts are checked before its view runs and answered with
    Http404 (Django's 404 page, which shows nothing of the URL); of the exceptions its views
    raise, only rq's NoSuchJobError (a job gone meanwhile) is a 404: any other stays a
    server error, to be seen and fixed."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    @staticmethod
    def _dashboard(request: HttpRequest, view: Callable[..., Any]) -> bool:
        user = getattr(request, "user", None)
        staff = bool(user and user.is_active and user.is_staff)
        # Anyone else gets the view's own answer: a redirect to the admin login.
        return staff and (getattr(view, "__module__", "") or "").startswith("django_rq")

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: list[Any],
        view_kwargs: dict[str, Any],
    ) -> None:
        if not self._dashboard(request, view_func):
            return
        index = view_kwargs.get("queue_index", view_kwargs.get("scheduler_index"))
        if index is not None and not 0 <= index < len(get_queues_list()):
            raise Http404("No such queue.")
        if "job_id" in view_kwargs:
            try:
                validate_job_id(view_kwargs["job_id"])
            except ValueError:
                raise Http404("No such job.") from None
        if "key" in view_kwargs:
            queue = get_queue_by_index(view_kwargs["queue_index"])
            key = view_kwargs["key"]
            if not key.startswith(Worker.redis_worker_namespace_prefix) or (
                Worker.find_by_key(key, connection=queue.connection) is None
            ):
                raise Http404("No such worker.")

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        match = request.resolver_match
        if (
            match is not None
            and isinstance(exception, NoSuchJobError)
            and self._dashboard(request, match.func)
        ):
            raise Http404("No such job.") from None
