from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from agentops.auth import role_required
from tools.credentials import credential_save, credential_test
from tools.forms import CredentialForm, McpServerForm, ToolForm, TryForm
from tools.mcp_sync import mcp_server_save, mcp_server_sync
from tools.models import Credential, McpServer, ToolDefinition, ToolKind
from tools.selectors import (
    credential_list,
    credential_users,
    mcp_server_list,
    mcp_server_tools,
    tool_callers,
    tool_list,
    tool_stats,
    tool_versions,
)
from tools.services import (
    tool_callers_set,
    tool_save,
    tool_set_enabled,
    tool_try,
)
from tracing.platform.errors import ApplicationError
from tracing.platform.failures import Failure
from tracing.platform.forms import form_submit, refusal_message
from tracing.platform.web import is_htmx, next_url

# -- tools --------------------------------------------------------------------------------


@role_required("admin")
def tools_index(request: HttpRequest) -> HttpResponse:
    return render(request, "tools/tool_list.html", {"tools": tool_list()})


def _save_tool_form(request: HttpRequest, form: ToolForm) -> ToolDefinition | None:
    said: list[str] = []

    @transaction.atomic
    def save() -> ToolDefinition:
        tool = tool_save(tool=form.save())
        if "agents" in form.fields:
            # Each agent changed gets a new version (see tools.access).
            said.extend(
                tool_callers_set(
                    tool=tool, caller_ids=form.cleaned_data["agents"], actor=request.user
                )
            )
        return tool

    tool = form_submit(request, form, save)
    for sentence in said:
        messages.info(request, sentence)
    return tool


@role_required("admin")
def tool_create(request: HttpRequest) -> HttpResponse:
    form = ToolForm(request.POST or None)
    if request.method == "POST":
        tool = _save_tool_form(request, form)
        if tool is not None:
            messages.success(request, f"Tool {tool.name} created (version {tool.version}).")
            return redirect("tools:detail", pk=tool.pk)
    return render(request, "tools/tool_form.html", {"form": form, "tool": None})


@role_required("admin")
def tool_edit(request: HttpRequest, pk: int) -> HttpResponse:
    tool = get_object_or_404(ToolDefinition, pk=pk)
    form = ToolForm(request.POST or None, instance=tool)
    if request.method == "POST":
        before = tool.version
        saved = _save_tool_form(request, form)
        if saved is not None:
            if saved.version != before:
                messages.success(
                    request, f"Saved as version {saved.version}; version {before} is kept."
                )
            else:
                messages.info(request, "Saved; the definition did not change, so no new version.")
            return redirect("tools:detail", pk=saved.pk)
        tool.refresh_from_db()
    return render(request, "tools/tool_form.html", {"form": form, "tool": tool})


def _detail_context(
    tool: ToolDefinition, try_form: TryForm, trial: object = None
) -> dict[str, object]:
    return {
        "tool": tool,
        "agents": tool_callers(tool=tool),
        "stats": tool_stats(tool=tool),
        "versions": tool_versions(tool=tool),
        "try_form": try_form,
        "trial": trial,
        "ToolKind": ToolKind,
    }


@role_required("admin")
def tool_detail(request: HttpRequest, pk: int) -> HttpResponse:
    tool = get_object_or_404(
        ToolDefinition.objects.select_related("credential", "mcp_server", "fallback"), pk=pk
    )
    example = {name: None for name in (tool.parameters.get("properties") or {})}
    try_form = TryForm(initial={"arguments": example})
    return render(request, "tools/tool_detail.html", _detail_context(tool, try_form))


@role_required("admin")
@require_POST
def tool_try_view(request: HttpRequest, pk: int) -> HttpResponse:
    tool = get_object_or_404(
        ToolDefinition.objects.select_related("credential", "mcp_server"), pk=pk
    )
    form = TryForm(request.POST)
    trial = (
        tool_try(tool=tool, arguments=form.cleaned_data["arguments"]) if form.is_valid() else None
    )
    context = _detail_context(tool, form, trial)
    if is_htmx(request):
        return render(request, "tools/tool_detail.html#try-result", context)
    return render(request, "tools/tool_detail.html", context)


@role_required("admin")
@require_POST
def tool_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    tool = get_object_or_404(ToolDefinition, pk=pk)
    enable = request.POST.get("enabled") == "1"
    try:
        tool = tool_set_enabled(tool=tool, enabled=enable)
    except (ApplicationError, ValidationError) as exc:
        refusal_message(
            request, exc, refused=f"Cannot {'enable' if enable else 'disable'} {tool.name}"
        )
    else:
        messages.success(
            request,
            f"{tool.name} {'enabled' if tool.enabled else 'disabled'} (version {tool.version}).",
        )
    return redirect(next_url(request, fallback=reverse("tools:detail", kwargs={"pk": tool.pk})))


# -- credentials ----------------------------------------------------------------------------


@role_required("admin")
def credentials_index(request: HttpRequest) -> HttpResponse:
    return render(request, "tools/credential_list.html", {"credentials": credential_list()})


def _save_credential_form(request: HttpRequest, form: CredentialForm) -> Credential | None:
    return form_submit(
        request,
        form,
        lambda: credential_save(
            credential=form.save(commit=False), secret=form.cleaned_data.get("secret") or None
        ),
    )


@role_required("admin")
@sensitive_post_parameters("secret")
def credential_create(request: HttpRequest) -> HttpResponse:
    form = CredentialForm(request.POST or None)
    if request.method == "POST":
        credential = _save_credential_form(request, form)
        if credential is not None:
            messages.success(
                request, f"Credential {credential.name} saved. Its secret is stored encrypted."
            )
            return redirect("tools:credential", pk=credential.pk)
    return render(request, "tools/credential_form.html", {"form": form, "credential": None})


@role_required("admin")
@sensitive_post_parameters("secret")
def credential_detail(request: HttpRequest, pk: int) -> HttpResponse:
    credential = get_object_or_404(Credential, pk=pk)
    form = CredentialForm(request.POST or None, instance=credential)
    if request.method == "POST":
        saved = _save_credential_form(request, form)
        if saved is not None:
            messages.success(request, f"Credential {saved.name} saved.")
            return redirect("tools:credential", pk=saved.pk)
        credential = Credential.objects.get(pk=pk)
    return render(
        request,
        "tools/credential_form.html",
        {
            "form": form,
            "credential": credential,
            "users": credential_users(credential=credential),
        },
    )


@role_required("admin")
@require_POST
def credential_test_view(request: HttpRequest, pk: int) -> HttpResponse:
    credential = get_object_or_404(Credential, pk=pk)
    check = credential_test(credential=credential)
    credential.refresh_from_db()
    context = {
        "credential": credential,
        "check": check,
        "form": CredentialForm(instance=credential),
        "users": credential_users(credential=credential),
    }
    if is_htmx(request):
        return render(request, "tools/credential_form.html#health", context)
    return render(request, "tools/credential_form.html", context)


# -- MCP servers ----------------------------------------------------------------------------


@role_required("admin")
def mcp_index(request: HttpRequest) -> HttpResponse:
    return render(request, "tools/mcp_list.html", {"servers": mcp_server_list()})


def _save_mcp_form(request: HttpRequest, form: McpServerForm) -> McpServer | None:
    return form_submit(request, form, lambda: mcp_server_save(server=form.save(commit=False)))


@role_required("admin")
def mcp_create(request: HttpRequest) -> HttpResponse:
    form = McpServerForm(request.POST or None)
    if request.method == "POST":
        server = _save_mcp_form(request, form)
        if server is not None:
            messages.success(
                request, f"MCP server {server.name} saved. Sync it to import its tools."
            )
            return redirect("tools:mcp", pk=server.pk)
    return render(request, "tools/mcp_form.html", {"form": form, "server": None})


@role_required("admin")
def mcp_detail(request: HttpRequest, pk: int) -> HttpResponse:
    server = get_object_or_404(McpServer, pk=pk)
    form = McpServerForm(request.POST or None, instance=server)
    if request.method == "POST":
        saved = _save_mcp_form(request, form)
        if saved is not None:
            messages.success(request, f"MCP server {saved.name} saved.")
            return redirect("tools:mcp", pk=saved.pk)
        server = McpServer.objects.get(pk=pk)
    return render(
        request,
        "tools/mcp_form.html",
        {
            "form": form,
            "server": server,
            "tools": mcp_server_tools(server=server),
        },
    )


@role_required("admin")
@require_POST
def mcp_sync_view(request: HttpRequest, pk: int) -> HttpResponse:
    server = get_object_or_404(McpServer, pk=pk)
    try:
        report = mcp_server_sync(server=server)
    except Failure as failure:
        messages.error(
            request,
            f"Could not list the tools of {server.name} ({failure.failure_class}): {failure}",
        )
        return redirect("tools:mcp", pk=server.pk)
    parts = [
        f"{len(report.created)} new (disabled until you enable them)",
        f"{len(report.updated)} updated",
        f"{len(report.unchanged)} unchanged",
    ]
    if report.missing:
        parts.append(
            f"{len(report.missing)} no longer offered (disabled): {', '.join(report.missing)}"
        )
    messages.success(request, f"Synced {server.name}: " + "; ".join(parts) + ".")
    for skipped in report.skipped:
        messages.warning(request, f"Skipped {skipped}")
    return redirect("tools:mcp", pk=server.pk)
