"""How a credential authenticates a request, and which values of it must never be shown."""

from __future__ import annotations

import base64

from tools.models import Credential, CredentialKind
from tracing.egress import Resolver

DEFAULT_API_KEY_HEADER = "X-API-Key"


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
    from tools.services import credential_access_token

    token = credential_access_token(
        credential=credential, force=force_refresh, stale_token=stale_token, resolver=resolver
    )
    return {"Authorization": f"Bearer {token}"}
