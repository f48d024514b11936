"""Encryption at rest for credentials and endpoint keys (Fernet; MultiFernet for rotation).

The bottom of the house: every app may import this package and it imports none of ours, so
`tools` (credentials) and `agentops` (model endpoint keys) encrypt with one key list without
either knowing the other.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the configured CREDENTIALS_KEY values."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.CREDENTIALS_KEYS))


def encrypt_text(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt_text(token: str) -> str:
    return _readable(fernet().decrypt, token)


def rotate_text(token: str) -> str:
    """Re-encrypt under the first (newest) key."""
    return _readable(fernet().rotate, token)


def _readable(operation: Callable[[bytes], bytes], token: str) -> str:
    try:
        return operation(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted: CREDENTIALS_KEY does not hold the key it was "
            "encrypted with."
        ) from exc
