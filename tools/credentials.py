"""Credentials: how one authenticates a request, which values of it must never be shown, and
the writes: saving one (the secret write-only), OAuth2 client-credentials tokens (fetched
once for concurrent callers, cached encrypted), use and failure bookkeeping, the check from
its page."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from tools.models import Credential, CredentialKind
from tools.transport import Redactor, failure_for_status, http_send
from tracing.platform.crypto import SecretUnreadable
from tracing.platform.egress import Resolver
from tracing.platform.failures import Failure, FailureClass
from tracing.platform.logs import get_logger

logger = get_logger(__name__)

DEFAULT_API_KEY_HEADER = "X-API-Key"
TOKEN_REFRESH_MARGIN = timedelta(seconds=30)
TOKEN_REQUEST_TIMEOUT = 15.0


def basic_value(username: str, password: str) -> str:
    return base64.b64encode(f"{username}:{password}".encode()).decode()


def credential_header_names(credential: Credential | None) -> list[str]:
    if credential is None:
        return []
    if credential.kind == CredentialKind.API_KEY:
        return [credential.header_name or DEFAULT_API_KEY_HEADER]
    return ["Authorization"]


def credential_secret_values(credential: Credential | None) -> list[str]:
    """Every string that would give the secret away: the secret, the access token, and the
    encoded forms that travel in headers."""
    if credential is None:
        return []
    values = []
    secret = credential.secret
    if secret:
        values.append(secret)
        if credential.kind == CredentialKind.BASIC:
            values.append(basic_value(credential.username, secret))
        if credential.kind == CredentialKind.OAUTH2:
            values.append(basic_value(credential.client_id, secret))
    token = credential.access_token
    if token:
        values.append(token)
    return [v for v in values if v]


def credential_auth_headers(
    *,
    credential: Credential,
    force_refresh: bool = False,
    stale_token: str = "",
    resolver: Resolver | None = None,
) -> dict[str, str]:
    """The headers that authenticate a request; fetches an OAuth2 token when needed."""
    if credential.kind == CredentialKind.API_KEY:
        return {credential.header_name or DEFAULT_API_KEY_HEADER: credential.secret}
    if credential.kind == CredentialKind.BEARER:
        return {"Authorization": f"Bearer {credential.secret}"}
    if credential.kind == CredentialKind.BASIC:
        return {"Authorization": f"Basic {basic_value(credential.username, credential.secret)}"}
    token = credential_access_token(
        credential=credential, force=force_refresh, stale_token=stale_token, resolver=resolver
    )
    return {"Authorization": f"Bearer {token}"}


@transaction.atomic
def credential_save(*, credential: Credential, secret: str | None = None) -> Credential:
    """Save a credential. `secret` (write-only) replaces the stored one when given; a change
    to an OAuth2 client drops its cached access token."""
    changed_client = False
    if credential.pk:
        previous = Credential.objects.get(pk=credential.pk)
        changed_client = (
            previous.token_url,
            previous.client_id,
            previous.scope,
            previous.kind,
        ) != (credential.token_url, credential.client_id, credential.scope, credential.kind)
    if secret:
        credential.set_secret(secret)
        changed_client = True
    if changed_client:
        credential.set_access_token("")
        credential.token_expires_at = None
    credential.full_clean()
    errors = credential_config_errors(credential)
    if errors:
        raise ValidationError(errors)
    credential.save()
    return credential


def credential_config_errors(credential: Credential) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not credential.secret_ciphertext:
        errors["secret"] = "Enter the secret (it is stored encrypted and never shown again)."  # noqa: S105
    if credential.kind == CredentialKind.BASIC and not credential.username:
        errors["username"] = "Basic auth needs a username."
    if credential.kind == CredentialKind.OAUTH2:
        if not credential.token_url:
            errors["token_url"] = "OAuth2 client credentials need the token URL."  # noqa: S105
        if not credential.client_id:
            errors["client_id"] = "OAuth2 client credentials need the client id."
    return errors


def credential_record_use(*, credential: Credential) -> None:
    now = timezone.now()
    Credential.objects.filter(pk=credential.pk).update(last_used_at=now)
    credential.last_used_at = now


def credential_record_failure(*, credential: Credential, message: str) -> None:
    message = Redactor(credential_secret_values(credential)).text(message)[:1000]
    now = timezone.now()
    Credential.objects.filter(pk=credential.pk).update(last_failure_at=now, last_failure=message)
    credential.last_failure_at, credential.last_failure = now, message


def _token_fresh(credential: Credential) -> bool:
    if not credential.access_token_ciphertext:
        return False
    expires = credential.token_expires_at
    return expires is None or expires - TOKEN_REFRESH_MARGIN > timezone.now()


def credential_access_token(
    *,
    credential: Credential,
    force: bool = False,
    stale_token: str = "",
    resolver: Resolver | None = None,
) -> str:
    """A usable OAuth2 access token: the stored one unless it is expired, expiring within 30 s,
    or is `stale_token` (rejected by a server); then a new one from the token endpoint.

    The row is locked while fetching, so concurrent callers fetch one token, not many.
    """
    if not force and not stale_token and _token_fresh(credential):
        return credential.access_token
    try:
        with transaction.atomic():
            locked = Credential.objects.select_for_update().get(pk=credential.pk)
            current = locked.access_token if locked.access_token_ciphertext else ""
            if (
                current
                and _token_fresh(locked)
                and ((stale_token and current != stale_token) or (not stale_token and not force))
            ):
                token, expires = current, locked.token_expires_at
            else:
                token, expires = _fetch_token(locked, resolver=resolver)
                locked.set_access_token(token)
                locked.token_expires_at = expires
                Credential.objects.filter(pk=locked.pk).update(
                    access_token_ciphertext=locked.access_token_ciphertext, token_expires_at=expires
                )
    except Failure as failure:
        credential_record_failure(credential=credential, message=str(failure))
        raise
    credential.access_token_ciphertext = locked.access_token_ciphertext
    credential.token_expires_at = expires
    return token


def _fetch_token(credential: Credential, *, resolver: Resolver | None) -> tuple[str, Any]:
    secret = credential.secret
    redactor = Redactor([secret, basic_value(credential.client_id, secret)])
    form = {"grant_type": "client_credentials"}
    if credential.scope:
        form["scope"] = credential.scope
    try:
        outcome = http_send(
            method="POST",
            url=credential.token_url,
            headers={
                "Authorization": f"Basic {basic_value(credential.client_id, secret)}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            content=urlencode(form).encode(),
            timeout=TOKEN_REQUEST_TIMEOUT,
            max_bytes=65536,
            follow_redirects=False,
            redactor=redactor,
            resolver=resolver,
        )
        failure = failure_for_status(outcome, redactor=redactor, where="the token endpoint")
        if failure is not None:
            raise failure
        try:
            payload = json.loads(outcome.body)
            token = str(payload["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise Failure(
                FailureClass.BAD_RESPONSE, "The token endpoint answered without an access_token."
            ) from exc
        if not token:
            raise Failure(
                FailureClass.BAD_RESPONSE, "The token endpoint answered with an empty access_token."
            )
        expires_in = payload.get("expires_in")
        expires = (
            timezone.now() + timedelta(seconds=float(expires_in))
            if isinstance(expires_in, int | float | str)
            and str(expires_in).replace(".", "", 1).isdigit()
            else None
        )
    except Failure as failure:
        message = f"OAuth2 token request failed: {redactor.text(str(failure))}"
        raise Failure(
            failure.failure_class,
            message,
            retry_after=failure.retry_after,
            may_have_reached_server=False,
            status_code=failure.status_code,
        ) from failure
    logger.info("credential.token.fetched", credential=credential.name)
    return token, expires


@dataclass
class CredentialCheck:
    ok: bool
    message: str
    elapsed_ms: float
    status_code: int | None = None


def credential_test(*, credential: Credential, resolver: Resolver | None = None) -> CredentialCheck:
    """Check a credential: fetch a token (OAuth2) and GET its test URL, if it has one."""
    started = time.monotonic()
    redactor = Redactor()
    steps = []
    try:
        redactor = Redactor(credential_secret_values(credential))
        headers = credential_auth_headers(
            credential=credential,
            force_refresh=credential.kind == CredentialKind.OAUTH2,
            resolver=resolver,
        )
        redactor = Redactor(credential_secret_values(credential))
        if credential.kind == CredentialKind.OAUTH2:
            steps.append("the token endpoint issued a token")
        status = None
        if credential.test_url:
            outcome = http_send(
                method="GET",
                url=credential.test_url,
                headers=headers,
                content=None,
                timeout=TOKEN_REQUEST_TIMEOUT,
                max_bytes=65536,
                redactor=redactor,
                credential_headers=frozenset(h.lower() for h in headers),
                resolver=resolver,
            )
            status = outcome.status_code
            failure = failure_for_status(outcome, redactor=redactor, where="the test URL")
            if failure is not None:
                raise failure
            steps.append(f"the test URL answered HTTP {status}")
        if not steps:
            return CredentialCheck(
                ok=True,
                elapsed_ms=_ms(started),
                message=("Stored and decryptable. Add a test URL to check it against a server."),
            )
        credential_record_use(credential=credential)
        return CredentialCheck(
            ok=True,
            message="OK: " + "; ".join(steps) + ".",
            elapsed_ms=_ms(started),
            status_code=status,
        )
    except SecretUnreadable as exc:
        return CredentialCheck(ok=False, message=str(exc), elapsed_ms=_ms(started))
    except Failure as failure:
        message = redactor.text(str(failure))
        credential_record_failure(credential=credential, message=message)
        return CredentialCheck(
            ok=False, message=message, elapsed_ms=_ms(started), status_code=failure.status_code
        )


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)
