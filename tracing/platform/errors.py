"""The one error a service raises when it refuses (HackSoft's ApplicationError, zulip's
JsonableError): the HTTP status sits on the class, the refused field (if any) on the
instance. One API handler (`agentops.api`) and one view helper (`tracing.platform.forms`) map
it; nothing catches `ValueError` to guess a status."""

from __future__ import annotations

from typing import Any, ClassVar


class ApplicationError(Exception):
    """A refusal a person or client can act on: its message is shown as it is, so it never
    holds a secret. `field` names the input it is about (an API body key, a form field)."""

    status: ClassVar[int] = 422

    def __init__(self, message: str, *, field: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def __str__(self) -> str:
        """The message where the field is not beside it (a flash message, an API body):
        "field: message", as the schema's own refusals read."""
        return f"{self.field}: {self.message}" if self.field else self.message

    def headers(self) -> dict[str, str]:
        """HTTP headers the refusal goes with (none but for TooMany's Retry-After)."""
        return {}

    def body(self) -> dict[str, Any]:
        """The JSON every door answers with: {"error": "field: message", "field"?, ...extra}."""
        body: dict[str, Any] = {"error": str(self)}
        if self.field:
            body["field"] = self.field
        return {**body, **self.extra}


class Invalid(ApplicationError, ValueError):
    """The input is malformed or out of range (422). Also a ValueError, so the doors with a
    wire format of their own (`/v1/`, a tool's result for the model) keep reading it."""


class BadRequest(ApplicationError):
    status = 400


class Forbidden(ApplicationError, PermissionError):
    """The actor may not do this (403): a missing role, another person's conversation."""

    status = 403


class NotFound(ApplicationError):
    status = 404


class Conflict(ApplicationError):
    """Well-formed, but the state does not allow it now (409): already claimed, not live."""

    status = 409


class TooMany(ApplicationError):
    """Refused for now (429): `retry_after` (seconds) says when to try again, in the body and
    as the `Retry-After` header (`headers`, which the one API handler sends)."""

    status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        field: str | None = None,
        **extra: object,
    ) -> None:
        if retry_after is not None:
            extra["retry_after"] = retry_after
        super().__init__(message, field=field, **extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class Unavailable(ApplicationError):
    status = 503
