"""`Idempotency-Key` on every POST of the JSON API: one ninja-level decorator (agentops/api.py
applies it to every operation with `api.add_decorator(idempotent, mode="view")`).

A POST that carries the header runs in one transaction that first inserts the key's row
(unique per caller: its API key, or its user for the browser session), then runs the
operation and stores its response in that row. So:
- a retry after the first committed gets the stored response (status and body) again,
  marked `Idempotent-Replayed: true`, and nothing runs twice;
- a concurrent duplicate's insert waits on the first one's uncommitted row (Postgres holds
  it) and then replays its response; it waits at most `WAIT_SECONDS`, then gets 409
  "still in progress" (retry later with the same key);
- the same key with another request (method, path or body) is a 422 naming the header;
- a response that changed nothing the client could not simply ask for again (401, 403,
  5xx) is not kept: the transaction is rolled back, and a retry runs the request afresh;
- a first request whose process died never committed its row: a retry runs afresh.
Rows older than `IDEMPOTENCY_TTL` are ignored, and deleted by the retention job.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.db import OperationalError, connection, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils import timezone

from agentops.auth import bearer_token, hash_api_key
from agentops.models import ApiKey, IdempotencyKey
from tracing.retention import RetentionPolicy

HEADER = "Idempotency-Key"
IDEMPOTENCY_TTL = timedelta(hours=24)
WAIT_SECONDS = 10
MAX_KEY_CHARS = 255
NOT_KEPT = frozenset({401, 403})


def _refusal(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": message, "field": HEADER}, status=status)


def _scope(request: HttpRequest) -> str | None:
    token = bearer_token(request.headers.get("Authorization"))
    if token is not None:
        key = ApiKey.objects.filter(key_hash=hash_api_key(token)).values("pk").first()
        return f"key:{key['pk']}" if key else None
    user = getattr(request, "user", None)
    return f"user:{user.pk}" if user is not None and user.is_authenticated else None


def _fingerprint(request: HttpRequest) -> str:
    body = request.body
    try:  # the same JSON sent with other spacing or key order is the same request
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, RecursionError):  # refused by the parser later, naming the field
        pass
    return hashlib.sha256(f"{request.method} {request.path}\n".encode() + body).hexdigest()


def _replay(row: IdempotencyKey) -> HttpResponse:
    response = HttpResponse(row.body, status=row.status_code, content_type=row.content_type)
    response["Idempotent-Replayed"] = "true"
    return response


def _claim(*, scope: str, key: str, fingerprint: str) -> IdempotencyKey | None:
    """Insert the key's row in the current transaction (None: it is ours to run), or return
    the stored row of a request that came first, once that one has committed."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
            [f"{int(WAIT_SECONDS * 1000)}ms"],
        )
        (previous, _) = cursor.fetchone()
        while True:
            cursor.execute(
                "INSERT INTO agentops_idempotencykey"
                " (scope, key, fingerprint, status_code, content_type, body, created_at)"
                " VALUES (%s, %s, %s, 0, '', '', %s) ON CONFLICT (scope, key) DO NOTHING"
                " RETURNING id",
                [scope, key, fingerprint, timezone.now()],
            )
            if cursor.fetchone() is not None:
                break
            row = IdempotencyKey.objects.filter(scope=scope, key=key).first()
            if row is None:
                continue  # deleted meanwhile (expired): try again
            if row.created_at >= timezone.now() - IDEMPOTENCY_TTL:
                return row
            row.delete()
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
    return None


def idempotent(run: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a ninja operation's `run` (view mode: before auth, so every response counts)."""
    if inspect.iscoroutinefunction(run):
        return run  # the async operations are GET streams

    @wraps(run)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        key = request.headers.get(HEADER)
        if request.method != "POST" or key is None:
            return run(request, *args, **kwargs)
        if not 1 <= len(key) <= MAX_KEY_CHARS or not key.isprintable():
            return _refusal(422, f"{HEADER}: must be 1 to {MAX_KEY_CHARS} printable characters")
        scope = _scope(request)
        if scope is None:
            return run(request, *args, **kwargs)  # no caller known: a 401 follows
        fingerprint = _fingerprint(request)
        try:
            with transaction.atomic():
                first = _claim(scope=scope, key=key, fingerprint=fingerprint)
                if first is not None:
                    if first.fingerprint != fingerprint:
                        return _refusal(
                            422,
                            f"{HEADER}: this key was used for another request (another body,"
                            " path or method); use a new key for a new request",
                        )
                    return _replay(first)
                response = run(request, *args, **kwargs)
                if response.status_code >= 500 or response.status_code in NOT_KEPT:
                    transaction.set_rollback(True)
                    return response
                IdempotencyKey.objects.filter(scope=scope, key=key).update(
                    status_code=response.status_code,
                    content_type=response.get("Content-Type", ""),
                    body=response.content.decode(response.charset or "utf-8"),
                )
                return response
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
                raise
            return _refusal(
                409,
                f"{HEADER}: a request with this key is still in progress; retry it later",
            )

    return wrapped


def idempotency_keys_purge(policy: RetentionPolicy) -> int:
    """The retention job's hook: delete keys past IDEMPOTENCY_TTL."""
    from tracing.retention import delete_in_batches

    return delete_in_batches(
        table=IdempotencyKey._meta.db_table,
        where="created_at < %s",
        params=[timezone.now() - IDEMPOTENCY_TTL],
        batch_size=policy.batch_size,
    )
