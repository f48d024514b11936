"""The agent builder's form: an agent's settings, as the snapshot's fields."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from agentops.agent_config import (
    BUILTIN_TOOLS,
    MEMORY_TOOLS,
    SCALAR_FIELDS,
    agent_tools_validate,
    config_editable,
    transfers_validate,
)
from agentops.agents import selectors
from agentops.guardrails.spec import guardrails_validate
from agentops.models import Agent, FeedbackRating, ModelEndpoint, slug_validator
from agentops.people.selectors import teams_all
from tools.registry import registered_tools
from tracing.platform.json_input import json_parse
from tracing.platform.web import MAX_DB_INT


class ToolChoices(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} — {obj.description}" if obj.description else obj.name


class AgentForm(forms.Form):
    slug = forms.CharField(
        max_length=64,
        validators=[slug_validator],
        help_text="Its id in URLs and the API: lowercase letters, digits and dashes.",
    )
    name = forms.CharField(max_length=200)
    system_prompt = forms.CharField(
        label="Instructions",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text="The system prompt: who the agent is and how it works.",
    )
    endpoint = forms.ModelChoiceField(
        label="Model endpoint", queryset=ModelEndpoint.objects.none(), empty_label=None
    )
    model = forms.CharField(
        max_length=200, required=False, help_text="Empty: the endpoint's default model."
    )
    temperature = forms.FloatField(
        required=False, min_value=0, max_value=2, help_text="Empty: the model's own default."
    )
    fallbacks = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "backup-endpoint gpt-4o-mini"}),
        help_text=(
            "Tried in order when the model fails: one per line, an endpoint's name and "
            "optionally a model (else its default)."
        ),
    )
    tools = ToolChoices(
        queryset=None,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    builtins = forms.MultipleChoiceField(
        label="Built-in tools",
        required=False,
        choices=[(name, name) for name in BUILTIN_TOOLS],
        initial=list(BUILTIN_TOOLS),
        widget=forms.CheckboxSelectMultiple,
        help_text="Offered to the model without ticking them above; untick one to turn it off.",
    )
    memory_enabled = forms.BooleanField(
        label="Long-term memory", required=False, help_text="Recall and remember memories."
    )
    recall_k = forms.IntegerField(
        label="Memories recalled per turn", min_value=0, max_value=50, initial=5
    )
    context_token_budget = forms.IntegerField(
        label="Context budget (tokens)",
        min_value=256,
        max_value=MAX_DB_INT,
        initial=8000,
        help_text="Older messages beyond it are folded into the running summary.",
    )
    max_steps = forms.IntegerField(
        min_value=1,
        max_value=MAX_DB_INT,
        initial=12,
        help_text="Model calls per run before it hands off.",
    )
    max_concurrent_runs = forms.IntegerField(
        required=False,
        min_value=0,
        max_value=MAX_DB_INT,
        help_text="Runs in flight at once. Empty: the server's default. 0: no limit.",
    )
    retry_max_attempts = forms.IntegerField(
        label="Retry attempts", min_value=1, max_value=100, initial=4
    )
    retry_base_seconds = forms.FloatField(
        label="Retry base delay (s)", min_value=0, max_value=3600, initial=0.5
    )
    retry_cap_seconds = forms.FloatField(
        label="Retry delay cap (s)", min_value=0, max_value=86_400, initial=30
    )
    run_max_cost = forms.FloatField(
        label="Max cost per run (USD)",
        required=False,
        min_value=0,
        help_text="Estimated from the price table; the run stops at it. Empty: no limit.",
    )
    run_max_tokens = forms.IntegerField(
        label="Max tokens per run",
        required=False,
        min_value=1,
        max_value=MAX_DB_INT,
        help_text="Model tokens in and out. Empty: no limit.",
    )
    run_max_tool_calls = forms.IntegerField(
        label="Max tool calls per run", required=False, min_value=1, max_value=MAX_DB_INT
    )
    run_max_seconds = forms.FloatField(
        label="Max wall time per run (s)",
        required=False,
        min_value=1,
        max_value=86_400 * 7,
        help_text="From its start, waits included. Empty: no limit.",
    )
    guardrails = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false", "class": "mono"}),
        help_text=(
            "A JSON list, checked in order. Each: name, stage (input, output, tool_arguments, "
            "tool_result), kind (terms, regex, pii, classifier, json_schema), action (block, "
            "redact, handoff, flag; approval for tool arguments), and its kind's fields: terms, "
            "patterns, entities (card, iban, email, phone, national_id), rubric, schema; "
            "message (shown when it blocks); tools (for tool stages); mode (blocking or "
            "parallel, input classifiers). See docs/features.md#guardrails."
        ),
    )
    transfers = forms.CharField(
        label="Transfers to other agents",
        required=False,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "class": "mono"}),
        help_text=(
            'A JSON list: [{"agent": "billing", "description": "refunds and invoices", '
            '"history": "all"}]. history: all, summary (of what came before the message) or '
            'last_n (with "turns"). The model is offered one transfer_to_<agent> tool each; '
            'the target must be published. Routing of a first message, "when": {"pattern": a '
            'regex on the message, "end_user": a regex on the end user id, "widget_key": a '
            'widget\'s public key} (all given must match); "classify": true lets one model call '
            "choose among such transfers (or keep the message)."
        ),
    )
    agent_tools = forms.CharField(
        label="Agents called as tools",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "class": "mono"}),
        help_text=(
            'A JSON list: [{"agent": "summariser", "description": "summarises a text"}]. The '
            "model is offered one ask_<agent> tool each: the agent's published version answers "
            "the request in a child run, and its answer is the tool's result."
        ),
    )
    handoff_team: forms.ModelChoiceField = forms.ModelChoiceField(
        queryset=None,
        required=False,
        empty_label="any operator",
        help_text="The team its handoffs go to.",
    )
    note = forms.CharField(
        max_length=500, required=False, help_text="What changed and why (kept with the version)."
    )

    def __init__(self, *args: Any, agent: Agent | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agent = agent
        self.fields["endpoint"].queryset = selectors.endpoints_list()  # type: ignore[attr-defined]
        self.fields["tools"].queryset = selectors.tools_list().exclude(  # type: ignore[attr-defined]
            name__in=BUILTIN_TOOLS
        )
        self.fields["builtins"].choices = [  # type: ignore[attr-defined]
            (name, _builtin_label(name)) for name in BUILTIN_TOOLS
        ]
        # Built-in tools ticked as tools (older agents) stay as they are: the builtins field
        # says whether each is offered.
        self.kept_tools: list[int] = []
        self.fields["handoff_team"].queryset = teams_all()  # type: ignore[attr-defined]
        if agent is not None:
            del self.fields["slug"]
            initial = agent_initial(agent)
            builtin_ids = set(
                selectors.tools_list().filter(name__in=BUILTIN_TOOLS).values_list("pk", flat=True)
            )
            self.kept_tools = [pk for pk in initial["tools"] if pk in builtin_ids]
            if not self.is_bound:
                self.initial = initial

    def clean_fallbacks(self) -> list[dict[str, Any]]:
        names = dict(ModelEndpoint.objects.values_list("name", "pk"))
        out = []
        for number, line in enumerate(self.cleaned_data["fallbacks"].splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) > 2:
                raise ValidationError(f"Line {number}: give an endpoint and at most one model.")
            if parts[0] not in names:
                raise ValidationError(f"Line {number}: no model endpoint named {parts[0]!r}.")
            out.append({"endpoint": names[parts[0]], "model": parts[1] if len(parts) > 1 else ""})
        return out

    def _json_list(
        self, name: str, validate: Callable[[object], list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """A JSON list field (guardrails, transfers, agent tools), cleaned by its one validator
        (whose errors, by entry and field, show beside the field)."""
        text = self.cleaned_data[name].strip()
        if not text:
            return []
        try:
            value = json_parse(text)
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}.") from None
        try:
            return validate(value)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict[name]) from None

    def _slug(self) -> str:
        return self.agent.slug if self.agent else str(self.data.get("slug", ""))

    def clean_guardrails(self) -> list[dict[str, Any]]:
        endpoints = set(ModelEndpoint.objects.values_list("pk", flat=True))
        return self._json_list(
            "guardrails", lambda value: guardrails_validate(value=value, endpoints=endpoints)
        )

    def clean_transfers(self) -> list[dict[str, Any]]:
        return self._json_list(
            "transfers", lambda value: transfers_validate(value=value, agent_slug=self._slug())
        )

    def clean_agent_tools(self) -> list[dict[str, Any]]:
        return self._json_list(
            "agent_tools",
            lambda value: agent_tools_validate(value=value, agent_slug=self._slug()),
        )

    def config(self) -> dict[str, Any]:
        """The cleaned form as snapshot fields (agentops.agent_config)."""
        data = self.cleaned_data
        config = {name: data[name] for name in SCALAR_FIELDS}
        config["endpoint"] = data["endpoint"].pk
        config["handoff_team"] = data["handoff_team"].pk if data["handoff_team"] else None
        config["tools"] = sorted({*(t.pk for t in data["tools"]), *self.kept_tools})
        config["fallbacks"] = data["fallbacks"]
        config["builtins_off"] = [b for b in BUILTIN_TOOLS if b not in data["builtins"]]
        config["guardrails"] = data["guardrails"]
        config["transfers"] = data["transfers"]
        config["agent_tools"] = data["agent_tools"]
        return config


def _builtin_label(name: str) -> str:
    registered = registered_tools().get(name)
    label = f"{name} — {registered.description}" if registered else name
    return label + (" (needs long-term memory)" if name in MEMORY_TOOLS else "")


def agent_initial(agent: Agent) -> dict[str, Any]:
    """The form's values: the agent's latest saved version (what its draft chat runs)."""
    config = config_editable(agent)
    names = dict(ModelEndpoint.objects.values_list("pk", "name"))
    initial: dict[str, Any] = {name: config[name] for name in SCALAR_FIELDS}
    initial.update(
        endpoint=config["endpoint"],
        handoff_team=config["handoff_team"],
        tools=list(config["tools"]),
        builtins=[b for b in BUILTIN_TOOLS if b not in config["builtins_off"]],
        guardrails=json.dumps(config["guardrails"], indent=2) if config["guardrails"] else "",
        transfers=json.dumps(config["transfers"], indent=2) if config["transfers"] else "",
        agent_tools=json.dumps(config["agent_tools"], indent=2) if config["agent_tools"] else "",
        max_concurrent_runs=agent.max_concurrent_runs,
        fallbacks="\n".join(
            f"{names.get(f['endpoint'], '')} {f['model']}".strip() for f in config["fallbacks"]
        ),
    )
    return initial


class FeedbackForm(forms.Form):
    rating = forms.ChoiceField(choices=FeedbackRating.choices, widget=forms.RadioSelect)
    score = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", "no score"), *[(str(i), str(i)) for i in range(1, 6)]],
    )
    comment = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )
    message = forms.IntegerField(required=False, widget=forms.HiddenInput)
