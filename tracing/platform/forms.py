"""The one way a page maps a service's refusal (the API's is `agentops.api`'s handler): beside
the field it names, else above the form, else in a flash message. A page's resource form flow
(validate, call the service, map the refusal, say what was done) is `form_submit`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest

from tracing.platform.errors import ApplicationError, Forbidden

T = TypeVar("T")

Refusal = ApplicationError | ValidationError
"""What a service refuses with: our own error, or Django's from a model's `full_clean`."""


def form_errors_from(
    form: forms.BaseForm,
    error: Refusal,
    *,
    rename: Callable[[str], str] | None = None,
    fallback: str | None = None,
) -> None:
    """Place `error` on `form`: beside the field it names when the form has that field (`rename`
    turns a service's name for it into the form's), else beside `fallback` (a one-field form's
    field), else above the form."""
    if isinstance(error, ApplicationError):
        name = rename(error.field) if rename and error.field else error.field
        if name and name in form.fields:
            form.add_error(name, error.message)
        else:
            form.add_error(fallback, str(error))
        return
    if not hasattr(error, "error_dict"):
        for message in error.messages:
            form.add_error(fallback, message)
        return
    for key, messages_ in error.message_dict.items():
        name = rename(key) if rename else key
        for message in messages_:
            form.add_error(name if name in form.fields else fallback, message)


def refusal_text(error: Refusal) -> str:
    """The refusal as one sentence, for a flash message or a partial's error line."""
    if isinstance(error, ApplicationError):
        return str(error)
    return "; ".join(error.messages)


def refusal_message(request: HttpRequest, error: Refusal, *, refused: str) -> None:
    """Flash the refusal of an action without a form: "<refused>: <why>." (e.g. "Not
    claimed: alice claimed it first.")."""
    messages.error(request, f"{refused}: {refusal_text(error)}.")


def form_submit(
    request: HttpRequest,
    form: forms.BaseForm,
    save: Callable[[], T],
    *,
    done: str | Callable[[T], str] | None = None,
    rename: Callable[[str], str] | None = None,
) -> T | None:
    """The resource form flow: validate the bound form, call `save` (the service, reading
    `form.cleaned_data`), place a refusal on the form, flash `done`. What `save` returned, or
    None when the form now holds the errors to show again. A `Forbidden` is a 403 page: no
    form can fix a missing right."""
    if not form.is_valid():
        return None
    try:
        saved = save()
    except Forbidden as exc:
        raise PermissionDenied(str(exc)) from exc
    except (ApplicationError, ValidationError) as exc:
        form_errors_from(form, exc, rename=rename)
        return None
    if done is not None:
        messages.success(request, done(saved) if callable(done) else done)
    return saved
