"""The one error a service raises when it refuses (HackSoft's ApplicationError, zulip's
JsonableError): the HTTP status sits on the class, the refused field (if any) on the
instance. One API handler (`agentops.api`) and one view helper (`form_errors_from`) map it;
nothing catches `ValueError` to guess a status."""

from __future__ import annotations

from typing import Any, ClassVar


class ApplicationError(Exception):
    """A refusal a person or client can act on: its message is shown as it is, so it never
    holds a secret. `field` names the input it is about (an API body key, a form field)."""

    status: ClassVar[int] = 422

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON every door answers with: {"error": message, "field": name?, ...extra}."""
        body: dict[str, Any] = {"error": self.message}
        if self.field:
            body["field"] = self.field
        return {**body, **self.extra}


class Invalid(ApplicationError):
    """The input is malformed or out of range (422)."""


class BadRequest(ApplicationError):
    status = 400


class Forbidden(ApplicationError):
    """The actor may not do this (403): a missing role, another person's conversation."""

    status = 403


class NotFound(ApplicationError):
    status = 404


class Conflict(ApplicationError):
    """Well-formed, but the state does not allow it now (409): already claimed, not live."""

    status = 409


class TooMany(ApplicationError):
    status = 429


class Unavailable(ApplicationError):
    status = 503
