"""The playground's form: the request of a model call, every part editable."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from agentops.models import ModelEndpoint
from tracing.platform.json_input import JsonInputError, json_parse

MONO = {"class": "mono", "spellcheck": "false"}
ROLES = [(r, r) for r in ("system", "user", "assistant", "tool")]


def _json(value: str, what: str, expect: type) -> Any:
    if not value.strip():
        return expect()
    try:
        parsed = json_parse(value)
    except JsonInputError as exc:  # a NUL, a lone surrogate, nested too deep
        raise ValidationError(f"{what}: {exc}.") from None
    except json.JSONDecodeError as exc:
        raise ValidationError(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}).") from None
    if not isinstance(parsed, expect):
        raise ValidationError(f"{what} must be a JSON {expect.__name__}.")
    return parsed


class PlaygroundForm(forms.Form):
    endpoint = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.order_by("name"), empty_label="Choose an endpoint"
    )
    model = forms.CharField(max_length=200, help_text="The model name sent to the endpoint.")
    temperature = forms.FloatField(
        required=False,
        min_value=0,
        max_value=2,
        help_text="Empty: not sent (the model's default).",
    )
    instructions = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text="The system message sent first (the agent's instructions, memory and "
        "summary as assembled). Empty: none.",
    )
    tools = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={**MONO, "rows": 6}),
        help_text="The tool definitions offered, as a JSON list (OpenAI format). Tool calls the "
        "model proposes are shown, never executed.",
    )

    def clean_tools(self) -> list[Any]:
        tools = _json(self.cleaned_data.get("tools") or "", "Tools", list)
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not (tool.get("function") or {}).get("name"):
                raise ValidationError(f"Tool {i + 1} needs a function with a name.")
        return tools


class MessageForm(forms.Form):
    role = forms.ChoiceField(choices=ROLES, initial="user")
    content = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 3}))
    extra = forms.CharField(
        required=False,
        label="Other fields (JSON)",
        widget=forms.Textarea(attrs={**MONO, "rows": 2}),
        help_text="tool_calls, tool_call_id, name… as sent.",
    )

    def clean_extra(self) -> dict[str, Any]:
        extra = _json(self.cleaned_data.get("extra") or "", "Other fields", dict)
        extra.pop("role", None)
        return extra


MessageFormSet = forms.formset_factory(MessageForm, extra=1, can_delete=True)


def initial_from_request(
    *,
    endpoint: ModelEndpoint | None,
    model: str,
    temperature: float | None,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The form's and the message formset's initial data for a request."""
    instructions = ""
    rest = list(messages)
    if rest and rest[0].get("role") == "system" and isinstance(rest[0].get("content"), str):
        instructions = rest.pop(0)["content"]
    form = {
        "endpoint": endpoint.pk if endpoint else None,
        "model": model,
        "temperature": temperature,
        "instructions": instructions,
        "tools": json.dumps(tools, indent=2, ensure_ascii=False) if tools else "",
    }
    rows = []
    for message in rest:
        extra = {k: v for k, v in message.items() if k not in ("role", "content")}
        content = message.get("content")
        if not isinstance(content, str):
            extra["content"] = content  # null beside tool calls, or a list of parts: kept as is
            content = ""
        rows.append(
            {
                "role": message.get("role", "user"),
                "content": content or "",
                "extra": json.dumps(extra, ensure_ascii=False) if extra else "",
            }
        )
    return form, rows


def request_from_forms(
    form: PlaygroundForm, formset: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(messages, tools) as the model will get them; unedited, exactly what was recorded."""
    messages: list[dict[str, Any]] = []
    instructions = form.cleaned_data.get("instructions") or ""
    if instructions:
        messages.append({"role": "system", "content": instructions})
    for row in formset.cleaned_data:
        if not row or row.get("DELETE"):
            continue
        extra = dict(row.get("extra") or {})
        content: Any = row.get("content") or ""
        if "content" in extra:
            content = extra.pop("content")
        messages.append({"role": row["role"], "content": content, **extra})
    return messages, form.cleaned_data.get("tools") or []
