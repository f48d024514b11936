"""Key rotation: re-encrypt every stored secret under the first CREDENTIALS_KEY.

tools rotates its own secrets (credential secrets, OAuth2 access tokens); an app above it
that stores secrets of its own (agentops: model endpoint keys) registers a participant with
`key_rotation_register`, so tools never touches another app's table. All of it happens in
one transaction: one unreadable secret changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction

from tools.models import Credential
from tracing.platform.crypto import SecretUnreadable, rotate_text

# rotate(ciphertext, what) -> the ciphertext under the first key; `what` names the secret in
# the error when no key can read it.
Rotate = Callable[[str, str], str]
# participant(rotate) re-encrypts its rows (locking them) and returns how many it changed.
RotationParticipant = Callable[[Rotate], int]
_participants: dict[str, RotationParticipant] = {}


def key_rotation_register(*, name: str, participant: RotationParticipant) -> None:
    """Add an app's secrets to key rotation; `name` ("endpoint keys") labels its count."""
    _participants[name] = participant


def _rotate(token: str, what: str) -> str:
    try:
        return rotate_text(token)
    except SecretUnreadable as exc:
        raise SecretUnreadable(
            f"The {what} cannot be decrypted with any key in CREDENTIALS_KEY."
        ) from exc


def credentials_rotate_key() -> dict[str, int]:
    """Re-encrypt every stored secret under the first CREDENTIALS_KEY; counts by kind."""
    counts = {"credential secrets": 0, "access tokens": 0}
    with transaction.atomic():
        for credential in Credential.objects.select_for_update():
            if credential.secret_ciphertext:
                credential.secret_ciphertext = _rotate(
                    credential.secret_ciphertext, f"secret of {credential.name}"
                )
                counts["credential secrets"] += 1
            if credential.access_token_ciphertext:
                credential.access_token_ciphertext = _rotate(
                    credential.access_token_ciphertext, f"access token of {credential.name}"
                )
                counts["access tokens"] += 1
            Credential.objects.filter(pk=credential.pk).update(
                secret_ciphertext=credential.secret_ciphertext,
                access_token_ciphertext=credential.access_token_ciphertext,
            )
        for name, participant in _participants.items():
            counts[name] = participant(_rotate)
    return counts
