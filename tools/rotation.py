"""Key rotation: re-encrypt every stored secret under the first CREDENTIALS_KEY.

tools rotates its own secrets (credential secrets, OAuth2 access tokens); an app above it
that stores secrets of its own (model endpoint keys, webhook signing secrets, widget key
secrets) registers the column with `key_rotation_register`, so tools never names another
app's table. All of it happens in one transaction: one unreadable secret changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.db import models, transaction

from tools.models import Credential
from tracing.platform.crypto import SecretUnreadable, rotate_text

# rotate(ciphertext, what) -> the ciphertext under the first key; `what` names the secret in
# the error when no key can read it.
Rotate = Callable[[str, str], str]


@dataclass(frozen=True)
class RotatedColumn:
    """A text column of Fernet ciphertext ("" for none) on another app's model."""

    model: type[models.Model]
    field: str
    what: str


_columns: dict[str, RotatedColumn] = {}


def key_rotation_register(*, name: str, model: type[models.Model], field: str, what: str) -> None:
    """Add an app's encrypted column to key rotation: `name` ("endpoint keys") labels its
    count, `what` ("API key of endpoint") with the row names a secret no key can read."""
    _columns[name] = RotatedColumn(model=model, field=field, what=what)


def column_rotate(*, column: RotatedColumn, rotate: Rotate) -> int:
    """Re-encrypt one registered column, row by row under lock; how many rows changed."""
    manager = column.model._default_manager
    count = 0
    rows = manager.select_for_update().exclude(**{column.field: ""}).only("pk", column.field)
    for row in rows:
        ciphertext = rotate(getattr(row, column.field), f"{column.what} {row}")
        manager.filter(pk=row.pk).update(**{column.field: ciphertext})
        count += 1
    return count


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
        for name, column in _columns.items():
            counts[name] = column_rotate(column=column, rotate=_rotate)
    return counts
