from __future__ import annotations

from typing import Any

from django import forms

from agentops.experiments.models import Dataset
from agentops.models import AgentVersion, ModelEndpoint
from tracing.platform.json_input import json_parse


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class AddTurnForm(forms.Form):
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.order_by("name"), required=False, empty_label="(a new dataset)"
    )
    new_dataset = forms.CharField(max_length=200, required=False, label="New dataset's name")
    reference = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="The answer hoped for; the checks compare answers with it.",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("dataset") and not (data.get("new_dataset") or "").strip():
            self.add_error("new_dataset", "Choose a dataset or name a new one.")
        return data


class ImportForm(forms.Form):
    file = forms.FileField(help_text='JSONL: one {"input", "context", "reference"} a line.')


class ReferenceForm(forms.Form):
    reference = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class VersionChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: AgentVersion) -> str:
        model = obj.config.get("model") or ""
        published = " · published" if obj.agent.published_version_id == obj.pk else ""
        return f"{obj.agent.slug} v{obj.number}{f' ({model})' if model else ''}{published}"


class VersionsChoice(forms.ModelMultipleChoiceField):
    label_from_instance = VersionChoice.label_from_instance


def _versions() -> Any:
    return AgentVersion.objects.select_related("agent").order_by("agent__slug", "-number")


class ExperimentForm(forms.Form):
    name = forms.CharField(max_length=200)
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.order_by("name"))
    baseline = VersionChoice(queryset=_versions(), help_text="Regressions are counted against it.")
    others = VersionsChoice(queryset=_versions(), required=False, label="Other versions")
    model = forms.CharField(
        max_length=200,
        required=False,
        label="Also run the baseline with model",
        help_text="Derives an unpublished version that runs this model.",
    )
    threshold = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Publish gate",
        help_text="Mean score (0 to 1) a version needs; below it, it is flagged.",
    )
    exact = forms.BooleanField(required=False, label="Exact match with the reference")
    contains = forms.CharField(
        required=False, label="Contains", help_text="Text; '*' for the reference."
    )
    regex = forms.CharField(required=False, label="Matches the regex")
    json_schema = forms.CharField(
        required=False, label="JSON schema", widget=forms.Textarea(attrs={"rows": 3})
    )
    judge = forms.BooleanField(required=False, label="LLM as judge")
    rubric = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    judge_endpoint = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.order_by("name"), required=False, label="Judge endpoint"
    )
    judge_model = forms.CharField(max_length=200, required=False, label="Judge model")

    def clean_json_schema(self) -> Any:
        raw = (self.cleaned_data.get("json_schema") or "").strip()
        if not raw:
            return None
        try:
            return json_parse(raw)
        except ValueError as exc:
            raise forms.ValidationError(f"Not JSON: {exc}") from None

    def variants(self) -> list[dict[str, Any]]:
        data = self.cleaned_data
        baseline = data["baseline"]
        out = [{"version": baseline.pk}]
        out += [{"version": v.pk} for v in data.get("others") or [] if v.pk != baseline.pk]
        if data.get("model"):
            out.append({"version": baseline.pk, "model": data["model"]})
        return out

    def checks(self) -> list[dict[str, Any]]:
        data = self.cleaned_data
        out: list[dict[str, Any]] = []
        if data.get("exact"):
            out.append({"kind": "exact"})
        if data.get("contains"):
            out.append(
                {
                    "kind": "contains",
                    "expected": "" if data["contains"] == "*" else data["contains"],
                }
            )
        if data.get("regex"):
            out.append({"kind": "regex", "expected": data["regex"]})
        if data.get("json_schema") is not None:
            out.append({"kind": "json_schema", "schema": data["json_schema"]})
        if data.get("judge"):
            endpoint = data.get("judge_endpoint")
            out.append(
                {
                    "kind": "judge",
                    "rubric": data.get("rubric") or "",
                    "endpoint": endpoint.pk if endpoint else None,
                    "model": data.get("judge_model") or "",
                }
            )
        return out


# Form fields named by the service's error keys (checks.N.expected → the check's own field).
CHECK_FIELDS = {
    "exact": "exact",
    "contains": "contains",
    "regex": "regex",
    "json_schema": "json_schema",
    "judge": "rubric",
}
