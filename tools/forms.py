from __future__ import annotations

import json
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError

from tools.access import tool_access
from tools.http_executor import (
    BODY_FORMATS,
    DEFAULT_IDEMPOTENCY_HEADER,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_RESPONSE_BYTES,
    MAX_RESPONSE_BYTES_LIMIT,
    METHODS,
    RESPONSE_MODES,
    http_config_errors,
)
from tools.models import Credential, McpServer, ToolDefinition, ToolKind
from tools.registry import get_python_tool
from tools.selectors import python_function_choices
from tools.services import tool_idempotency_key_errors
from tracing.platform.json_input import JsonInputError, json_parse

MONO = {"class": "mono", "spellcheck": "false", "autocomplete": "off"}


def parse_json_text(text: str, *, what: str) -> Any:
    """JSON from a form field, or a ValidationError saying where it breaks."""
    try:
        return json_parse(text)
    except JsonInputError as exc:  # a NUL, a lone surrogate, nested too deep
        raise ValidationError(f"{what}: {exc}.") from exc
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."
        ) from exc


class JsonTextField(forms.CharField):
    def __init__(self, *, what: str, expect: type, **kwargs: Any) -> None:
        self.what, self.expect = what, expect
        kwargs.setdefault("widget", forms.Textarea(attrs={**MONO, "rows": 4}))
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value, indent=2, ensure_ascii=False)
        return value

    def to_python(self, value: Any) -> Any:
        text = (super().to_python(value) or "").strip()
        if not text:
            return self.expect()
        parsed = parse_json_text(text, what=self.what)
        if not isinstance(parsed, self.expect):
            kind = "a JSON object" if self.expect is dict else "a JSON list"
            raise ValidationError(f"{self.what} must be {kind}.")
        return parsed


class ToolForm(forms.ModelForm):
    parameters = JsonTextField(
        what="The parameters",
        expect=dict,
        required=False,
        widget=forms.Textarea(attrs={**MONO, "rows": 10}),
        help_text='A JSON schema of "type": "object". Python tools take theirs from the function\'s type hints.',
    )
    python_function = forms.ChoiceField(
        required=False, help_text="Functions registered in code with @python_tool."
    )
    agents = forms.TypedMultipleChoiceField(
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=(
            "Agents that may call this tool. Ticking or unticking one saves a new version of "
            "it (not published: it runs once published in the agent builder)."
        ),
    )
    http_method = forms.ChoiceField(
        choices=[(m, m) for m in METHODS], initial="GET", required=False, label="Method"
    )
    http_url = forms.CharField(
        required=False,
        label="URL template",
        max_length=2000,
        widget=forms.TextInput(attrs=MONO),
        help_text="e.g. https://api.example.com/orders/{{order_id}}: values are URL-encoded.",
    )
    http_query = JsonTextField(
        what="The query parameters",
        expect=dict,
        required=False,
        label="Query parameters",
        help_text='e.g. {"q": "{{query}}"}: a parameter for a missing argument is left out.',
    )
    http_headers = JsonTextField(
        what="The headers",
        expect=dict,
        required=False,
        label="Headers",
        help_text="Templates too. Credentials go in a credential, not here.",
    )
    http_body_format = forms.ChoiceField(
        choices=[("", "no body"), *[(f, f) for f in BODY_FORMATS]],
        required=False,
        label="Body format",
    )
    http_body = forms.CharField(
        required=False,
        label="Body template",
        widget=forms.Textarea(attrs={**MONO, "rows": 5}),
        help_text='JSON: {"name": "{{name}}", "count": {{count}}}: values are JSON-encoded.',
    )
    response_mode = forms.ChoiceField(
        choices=[(m, m) for m in RESPONSE_MODES],
        initial="body",
        required=False,
        label="Response mapping",
        help_text="body: the text, truncated; json: the JSON (or a part of it); "
        "status: only the status code.",
    )
    response_json_path = forms.CharField(
        required=False,
        label="JSON path",
        widget=forms.TextInput(attrs=MONO),
        help_text="e.g. $.data.items[*].id (json mode).",
    )
    response_max_chars = forms.IntegerField(
        required=False,
        min_value=100,
        max_value=100_000,
        initial=DEFAULT_MAX_CHARS,
        label="Result characters at most",
    )
    response_include_status = forms.BooleanField(
        required=False, label="Put the status code in the result"
    )
    max_response_bytes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_RESPONSE_BYTES_LIMIT,
        initial=DEFAULT_MAX_RESPONSE_BYTES,
        label="Response bytes at most",
    )
    follow_redirects = forms.BooleanField(required=False, initial=True, label="Follow redirects")
    http_idempotency_header = forms.CharField(
        required=False,
        max_length=100,
        initial=DEFAULT_IDEMPOTENCY_HEADER,
        label="Idempotency-key header",
        widget=forms.TextInput(attrs=MONO),
        help_text="Sent with every request but GET and HEAD, the same on each attempt of a call "
        "(run, step, call id). Empty: no key is sent.",
    )

    class Meta:
        model = ToolDefinition
        fields = [
            "name",
            "description",
            "kind",
            "parameters",
            "timeout_seconds",
            "retry_max_attempts",
            "retry_base_seconds",
            "retry_cap_seconds",
            "idempotent",
            "honours_idempotency_key",
            "idempotency_key_argument",
            "fallback",
            "requires_approval",
            "enabled",
            "python_function",
            "credential",
            "mcp_server",
            "mcp_tool_name",
        ]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}
        help_texts = {
            "name": "The function name the model sees: letters, digits, underscores.",
            "idempotent": "Safe to repeat. A non-idempotent tool is never retried once a request may have "
            "reached the server.",
            "honours_idempotency_key": "The service makes a change once per idempotency key and "
            "answers a repeated key with its first answer (as Stripe does). A call whose outcome "
            "is unknown (its worker died, it timed out) is then sent again with the same key; "
            "without this it is never repeated and the run goes to a person.",
            "idempotency_key_argument": "Python and MCP tools: the argument the key is passed in "
            "(the model does not see it). HTTP tools send it in the idempotency-key header.",
            "requires_approval": "An operator approves each call before it runs.",
            "fallback": "Called with the same arguments when this tool still fails after its retries.",
            "retry_max_attempts": "Attempts in all (1 = no retry).",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["python_function"]).choices = [
            ("", "—"),
            *python_function_choices(),
        ]
        description = self.fields["description"]
        description.required = False
        description.help_text = (
            "What the tool does, for the model. Python tools default to their docstring."
        )
        access = tool_access()
        if access is None:
            del self.fields["agents"]
        else:
            agents = cast(forms.TypedMultipleChoiceField, self.fields["agents"])
            agents.choices = [(c.pk, c.label) for c in access.callers()]
            if self.instance.pk:
                agents.initial = [c.pk for c in access.callers_of(tool_id=self.instance.pk)]
        fallback = cast(forms.ModelChoiceField, self.fields["fallback"])
        fallback.queryset = ToolDefinition.objects.order_by("name")
        if self.instance.pk:
            fallback.queryset = ToolDefinition.objects.exclude(pk=self.instance.pk).order_by("name")
        config = self.instance.http_config or {}
        response = config.get("response") or {}
        initial = {
            "http_method": config.get("method", "GET"),
            "http_url": config.get("url", ""),
            "http_query": config.get("query") or {},
            "http_headers": config.get("headers") or {},
            "http_body_format": config.get("body_format", ""),
            "http_body": config.get("body", ""),
            "response_mode": response.get("mode", "body"),
            "response_json_path": response.get("json_path", ""),
            "response_max_chars": response.get("max_chars", DEFAULT_MAX_CHARS),
            "response_include_status": response.get("include_status", False),
            "max_response_bytes": config.get("max_response_bytes", DEFAULT_MAX_RESPONSE_BYTES),
            "follow_redirects": config.get("follow_redirects", True),
            "http_idempotency_header": config.get("idempotency_header", DEFAULT_IDEMPOTENCY_HEADER),
        }
        for key, value in initial.items():
            self.fields[key].initial = value
        if not self.instance.pk and not self.is_bound:
            self.fields["parameters"].initial = {"type": "object", "properties": {}, "required": []}
        self.http_config: dict[str, Any] = dict(config)

    _HTTP_ERROR_FIELDS = {
        "method": "http_method",
        "url": "http_url",
        "query": "http_query",
        "headers": "http_headers",
        "body_format": "http_body_format",
        "body": "http_body",
        "response": "response_mode",
        "json_path": "response_json_path",
        "max_response_bytes": "max_response_bytes",
        "idempotency_header": "http_idempotency_header",
    }

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        kind = data.get("kind")
        if kind == ToolKind.PYTHON:
            registered = get_python_tool(data.get("python_function") or "")
            if registered is None:
                self.add_error("python_function", "Pick a Python function registered in code.")
            else:
                data["parameters"] = registered.parameters
                if not data.get("description"):
                    data["description"] = registered.description
        elif kind == ToolKind.HTTP:
            self._clean_http(data)
        elif kind == ToolKind.MCP:
            if not data.get("mcp_server"):
                self.add_error("mcp_server", "Pick the MCP server.")
            if not data.get("mcp_tool_name"):
                self.add_error("mcp_tool_name", "Give the tool's name on the MCP server.")
        if not data.get("description") and "description" not in self.errors:
            self.add_error(
                "description", "Describe the tool: the model reads this to decide when to call it."
            )
        if "parameters" in data and not data["parameters"]:
            data["parameters"] = {"type": "object", "properties": {}}
        self._clean_idempotency_key(data)
        return data

    def _clean_idempotency_key(self, data: dict[str, Any]) -> None:
        declared = ToolDefinition(
            kind=data.get("kind") or "",
            honours_idempotency_key=bool(data.get("honours_idempotency_key")),
            idempotency_key_argument=data.get("idempotency_key_argument") or "",
            http_config=self.http_config,
            python_function=data.get("python_function") or "",
        )
        for key, messages in tool_idempotency_key_errors(declared).items():
            field = self._HTTP_ERROR_FIELDS.get(key, key)
            if field not in self.errors:
                for message in messages:
                    self.add_error(field, message)

    def _clean_http(self, data: dict[str, Any]) -> None:
        config = {
            "method": data.get("http_method") or "GET",
            "url": (data.get("http_url") or "").strip(),
            "query": data.get("http_query") or {},
            "headers": data.get("http_headers") or {},
            "body_format": data.get("http_body_format") or "",
            "body": data.get("http_body") or "",
            "response": {
                "mode": data.get("response_mode") or "body",
                "json_path": (data.get("response_json_path") or "").strip(),
                "max_chars": data.get("response_max_chars") or DEFAULT_MAX_CHARS,
                "include_status": bool(data.get("response_include_status")),
            },
            "max_response_bytes": data.get("max_response_bytes") or DEFAULT_MAX_RESPONSE_BYTES,
            "follow_redirects": bool(data.get("follow_redirects")),
        }
        if "max_redirects" in self.http_config:
            config["max_redirects"] = self.http_config["max_redirects"]
        header = (data.get("http_idempotency_header") or "").strip()
        if "http_idempotency_header" not in self.data:  # a post from before the field: kept
            header = self.http_config.get("idempotency_header", DEFAULT_IDEMPOTENCY_HEADER)
        if header != DEFAULT_IDEMPOTENCY_HEADER or "idempotency_header" in self.http_config:
            config["idempotency_header"] = header  # else left out, as before: no new version
        parameters = data.get("parameters") or {}
        names = (
            set((parameters.get("properties") or {}).keys())
            if isinstance(parameters, dict)
            else set()
        )
        for key, messages in http_config_errors(config, names).items():
            field = self._HTTP_ERROR_FIELDS.get(key)
            for message in messages:
                if field and field not in self.errors:
                    self.add_error(field, message)
                elif not field:
                    self.add_error(None, message)
        self.http_config = config

    def save(self, commit: bool = False) -> ToolDefinition:
        tool = super().save(commit=False)
        if tool.kind == ToolKind.HTTP:
            tool.http_config = self.http_config
        return tool


class CredentialForm(forms.ModelForm):
    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The key, token, password or client secret. Write-only: stored encrypted, never shown again. "
        "Leave empty to keep the stored one.",
    )

    class Meta:
        model = Credential
        fields = [
            "name",
            "kind",
            "header_name",
            "username",
            "token_url",
            "client_id",
            "scope",
            "test_url",
        ]
        help_texts = {
            "header_name": "API key: the header that carries it (X-API-Key when empty). For a stdio MCP "
            "server: the environment variable (MCP_API_KEY when empty).",
            "username": "Basic auth.",
            "token_url": "OAuth2 client credentials: the token endpoint.",
        }


class McpServerForm(forms.ModelForm):
    args = JsonTextField(
        what="The arguments",
        expect=list,
        required=False,
        widget=forms.Textarea(attrs={**MONO, "rows": 2}),
        help_text='stdio: the command\'s arguments as a JSON list, e.g. ["-m", "my_server"].',
    )

    class Meta:
        model = McpServer
        fields = ["name", "transport", "url", "command", "args", "credential", "enabled"]
        help_texts = {
            "url": "Streamable HTTP: the endpoint, e.g. https://mcp.example.com/mcp.",
            "command": "stdio: the program to start (it runs on the workers).",
        }

    def clean_args(self) -> list[str]:
        args = self.cleaned_data.get("args") or []
        if not all(isinstance(a, str) for a in args):
            raise ValidationError("Each argument must be a string.")
        return args


class TryForm(forms.Form):
    arguments = JsonTextField(
        what="The arguments",
        expect=dict,
        required=False,
        widget=forms.Textarea(attrs={**MONO, "rows": 6}),
    )
