"""The playground: open a recorded model call, edit it, run it again beside the original.
Operators see calls and past runs (read-only); admins run them (they spend real tokens)."""

from __future__ import annotations

import uuid
from typing import Any

from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from agentops.auth import has_role, role_require, role_required
from agentops.models import PlaygroundRun
from agentops.playground import selectors, services
from agentops.playground.forms import (
    MessageFormSet,
    PlaygroundForm,
    initial_from_request,
    request_from_forms,
)
from agentops.playground.selectors import ModelCallSource
from tracing.platform.web import HtmxHttpRequest, error_status


def _source_or_404(trace_id: uuid.UUID, span_id: str) -> ModelCallSource:
    source = selectors.model_call_source(trace_id=trace_id, span_id=span_id)
    if source is None:
        raise Http404("No such model call in this trace.")
    return source


def _forms(
    request: HtmxHttpRequest, *, source: ModelCallSource, base: PlaygroundRun | None
) -> tuple[PlaygroundForm, Any]:
    if request.method == "POST":
        return PlaygroundForm(request.POST), MessageFormSet(request.POST, prefix="m")
    if base is not None:
        initial, rows = initial_from_request(
            endpoint=base.endpoint,
            model=base.model,
            temperature=base.temperature,
            messages=base.messages,
            tools=base.tools,
        )
    else:
        initial, rows = initial_from_request(
            endpoint=source.endpoint,
            model=source.model,
            temperature=source.temperature,
            messages=source.messages,
            tools=source.tools,
        )
    return PlaygroundForm(initial=initial), MessageFormSet(initial=rows, prefix="m")


def _context(
    request: HtmxHttpRequest,
    *,
    source: ModelCallSource,
    form: PlaygroundForm,
    formset: Any,
    run: PlaygroundRun | None = None,
) -> dict[str, Any]:
    can_run = has_role(request.user, "admin")
    if not can_run:
        for f in [form, *formset.forms]:
            for field in f.fields.values():
                field.disabled = True
    context: dict[str, Any] = {
        "source": source,
        "form": form,
        "formset": formset,
        "can_run": can_run,
        "run": run,
        "history": selectors.playground_runs_of(trace_id=source.trace_id, span_id=source.span_id)[
            :20
        ],
        "original_text": selectors.output_text(
            content=source.output_content, tool_calls=source.output_tool_calls
        ),
    }
    if run is not None:
        new_text = selectors.output_text(
            content=run.output_content, tool_calls=run.output_tool_calls
        )
        context["run_cost"] = selectors.playground_run_cost(run=run)
        context["diff"] = selectors.output_diff(original=context["original_text"], new=new_text)
        context["same_output"] = new_text == context["original_text"]
    return context


@role_required("operator")
@require_GET
def index(request: HtmxHttpRequest) -> HttpResponse:
    return render(request, "playground/index.html", {"runs": selectors.playground_runs()})


@role_required("operator")
@require_http_methods(["GET", "POST"])
def open_call(request: HtmxHttpRequest, trace_id: uuid.UUID, span_id: str) -> HttpResponse:
    source = _source_or_404(trace_id, span_id)
    form, formset = _forms(request, source=source, base=None)
    status = 200
    if request.method == "POST":
        role_require(
            user=request.user,
            role="admin",
            refusal="Running a model call in the playground needs the admin role.",
        )
        if form.is_valid() and formset.is_valid():
            messages, tools = request_from_forms(form, formset)
            if messages:
                run = services.playground_run(
                    source_trace_id=source.trace_id,
                    source_span_id=source.span_id,
                    endpoint=form.cleaned_data["endpoint"],
                    model=form.cleaned_data["model"],
                    temperature=form.cleaned_data["temperature"],
                    messages=messages,
                    tools=tools,
                    actor=request.user,
                )
                return redirect("playground:run", run_id=run.pk)
            form.add_error(None, "Send at least one message (or instructions).")
        status = error_status(request)
    context = _context(request, source=source, form=form, formset=formset)
    return render(request, "playground/call.html", context, status=status)


@role_required("operator")
@require_GET
def run_detail(request: HtmxHttpRequest, run_id: uuid.UUID) -> HttpResponse:
    run = get_object_or_404(PlaygroundRun.objects.select_related("endpoint"), pk=run_id)
    source = _source_or_404(run.source_trace_id, run.source_span_id)
    form, formset = _forms(request, source=source, base=run)
    context = _context(request, source=source, form=form, formset=formset, run=run)
    return render(request, "playground/call.html", context)
