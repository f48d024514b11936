"""The one page-side mapping of a service's refusal (tracing.platform.forms): beside the field
it names, else above the form; the resource form flow keeps what was typed and stores nothing
the service refused; a missing right is a 403, not a form error."""

from __future__ import annotations

import pytest
from django import forms
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest
from django.test import RequestFactory

from tracing.platform.errors import Conflict, Forbidden, Invalid
from tracing.platform.forms import form_errors_from, form_submit, refusal_message


class NoteForm(forms.Form):
    title = forms.CharField()
    content = forms.CharField()


def _request() -> HttpRequest:
    request = RequestFactory().post("/")
    request._messages = CookieStorage(request)  # type: ignore[attr-defined]
    return request


def _bound() -> NoteForm:
    return NoteForm({"title": "Hello", "content": "typed by hand"})


def test_it_places_a_refusal_beside_the_field_it_names() -> None:
    form = _bound()
    assert form.is_valid()
    form_errors_from(form, Invalid("must not mention the weather", field="content"))
    assert form.errors["content"] == ["must not mention the weather"]
    assert form.non_field_errors() == []


def test_it_puts_a_refusal_about_no_field_of_the_form_above_it_naming_the_field() -> None:
    form = _bound()
    assert form.is_valid()
    form_errors_from(form, Conflict("a note named so exists already", field="name"))
    form_errors_from(form, Conflict("the conversation is closed"))
    assert form.non_field_errors() == [
        "name: a note named so exists already",
        "the conversation is closed",
    ]


def test_it_places_a_models_validation_error_and_renames_the_services_names() -> None:
    form = _bound()
    assert form.is_valid()
    error = ValidationError({"checks.0": ["Give a rubric."], "elsewhere": ["Not here."]})
    form_errors_from(form, error, rename=lambda key: "title" if key == "checks.0" else key)
    assert form.errors["title"] == ["Give a rubric."]
    assert form.non_field_errors() == ["Not here."]


def test_the_form_flow_keeps_the_input_and_stores_nothing_refused() -> None:
    stored: list[str] = []

    def save() -> str:
        if "weather" in form.cleaned_data["content"]:
            raise Invalid("must not mention the weather", field="content")
        stored.append(form.cleaned_data["content"])
        return form.cleaned_data["content"]

    request = _request()
    form = NoteForm({"title": "Hi", "content": "the weather"})
    assert form_submit(request, form, save, done="Saved.") is None
    assert form.errors["content"] == ["must not mention the weather"]
    assert form["content"].value() == "the weather" and stored == []
    assert list(get_messages(request)) == []

    form = NoteForm({"title": "Hi", "content": "tea"})
    assert form_submit(request, form, save, done=lambda saved: f"Saved {saved}.") == "tea"
    assert stored == ["tea"] and [str(m) for m in get_messages(request)] == ["Saved tea."]


def test_the_form_flow_does_not_call_the_service_with_an_invalid_form() -> None:
    called: list[bool] = []
    form = NoteForm({"title": ""})
    assert form_submit(_request(), form, lambda: called.append(True)) is None
    assert called == [] and set(form.errors) == {"title", "content"}


def test_a_missing_right_is_a_403_not_a_form_error() -> None:
    def save() -> None:
        raise Forbidden("only admins change labels")

    with pytest.raises(PermissionDenied, match="only admins change labels"):
        form_submit(_request(), _bound(), save)


def test_an_action_refused_says_what_was_not_done_and_why() -> None:
    request = _request()
    refusal_message(
        request, Invalid("choose one of online, away", field="presence"), refused="Not changed"
    )
    assert [str(m) for m in get_messages(request)] == [
        "Not changed: presence: choose one of online, away."
    ]
