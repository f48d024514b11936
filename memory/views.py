"""Memory pages. Anyone with the viewer role reads; editing, pinning, deleting and adding
need the operator role (or admin)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agentops.auth import role_required
from memory.forms import MemoryCreateForm, MemoryEditForm, MemoryFilterForm
from memory.models import Memory
from memory.selectors import (
    memory_agent,
    memory_agent_of,
    memory_agents,
    memory_browse,
    memory_events,
    memory_get,
    memory_recalls,
    memory_revisions,
    memory_unembedded_count,
)
from memory.services import memory_create, memory_delete, memory_update
from tracing.platform.failures import Failure
from tracing.platform.forms import form_submit
from tracing.platform.web import HtmxHttpRequest, error_status, page_query

PAGE_SIZE = 50


def _agent_or_404(slug: str) -> Any:
    agent = memory_agent(slug=slug)
    if agent is None:
        raise Http404("No such agent.")
    return agent


def _memory_or_404(pk: int) -> Memory:
    memory = memory_get(memory_id=pk)
    if memory is None:
        raise Http404("No such memory (it may have been deleted or expired).")
    return memory


@role_required("viewer")
def memory_index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "memory/index.html",
        {"agents": memory_agents(), "unembedded": memory_unembedded_count()},
    )


@role_required("viewer")
def agent_memories(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(slug)
    form = MemoryFilterForm(request.GET or None)
    context: dict[str, Any] = {"agent": agent, "form": form, "searching": False}
    filters: dict[str, Any] = {}
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        filters = {
            "query": data["q"].strip(),
            "kind": data["kind"],
            "user_key": {"agent": "", "user": data["user"].strip()}.get(data["scope"]),
            "pinned": {"yes": True, "no": False}.get(data["pinned"]),
        }
    status = 200
    if form.is_bound and not form.is_valid():
        status = error_status(request)
        context["page"] = None
        context["results"] = []
    else:
        try:
            found = memory_browse(agent_id=agent.pk, **filters)
        except Failure as exc:
            # The embedding endpoint failed: say so where the search was typed.
            form.add_error("q", f"Search is unavailable: {exc}")
            found, status = [], error_status(request, 503)
        context["searching"] = bool(filters.get("query"))
        if context["searching"]:
            context["page"] = None
            context["results"] = found
        else:
            context["page"] = Paginator(found, PAGE_SIZE).get_page(request.GET.get("page"))
            context["results"] = context["page"].object_list
        context["querystring"] = page_query(request)
    context["create_form"] = MemoryCreateForm()
    context["unembedded"] = memory_unembedded_count(agent_id=agent.pk)
    template = "memory/agent.html#results" if request.htmx else "memory/agent.html"
    return render(request, template, context, status=status)


@role_required("operator")
@require_POST
def memory_new(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(slug)
    form = MemoryCreateForm(request.POST)
    memory = form_submit(
        request,
        form,
        lambda: memory_create(
            agent_id=agent.pk,
            user_key=form.cleaned_data["user_key"].strip(),
            text=form.cleaned_data["text"],
            kind=form.cleaned_data["kind"],
            importance=form.cleaned_data["importance"],
            actor=request.user,
        ),
        done="Memory added; it is searchable once embedded.",
    )
    if memory is not None:
        return redirect("memory:detail", pk=memory.pk)
    context = {
        "agent": agent,
        "form": MemoryFilterForm(),
        "create_form": form,
        "page": None,
        "results": [],
        "unembedded": memory_unembedded_count(agent_id=agent.pk),
        "show_create": True,
    }
    return render(request, "memory/agent.html", context, status=400)


@role_required("viewer")
def agent_history(request: HttpRequest, slug: str) -> HttpResponse:
    agent = _agent_or_404(slug)
    return render(
        request,
        "memory/history.html",
        {"agent": agent, "events": memory_events(agent_id=agent.pk, limit=200)},
    )


def _detail(
    request: HttpRequest,
    memory: Memory,
    *,
    edit_form: MemoryEditForm | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "memory": memory,
        "agent": memory_agent_of(memory=memory),
        "recalls": memory_recalls(memory=memory),
        "revisions": memory_revisions(memory=memory),
        "events": memory_events(memory_ref=memory.pk),
        "edit_form": edit_form
        or MemoryEditForm(initial={"text": memory.text, "importance": memory.importance}),
    }
    return render(request, "memory/detail.html", context, status=status)


@role_required("viewer")
def memory_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _detail(request, _memory_or_404(pk))


@role_required("operator")
@require_POST
def memory_edit(request: HttpRequest, pk: int) -> HttpResponse:
    memory = _memory_or_404(pk)
    form = MemoryEditForm(request.POST)
    saved = form_submit(
        request,
        form,
        lambda: memory_update(
            memory=memory,
            text=form.cleaned_data["text"],
            importance=form.cleaned_data["importance"],
            actor=request.user,
        ),
        done="Memory saved; the previous text is kept in its history.",
    )
    if saved is not None:
        return redirect("memory:detail", pk=memory.pk)
    return _detail(request, memory, edit_form=form, status=400)


@role_required("operator")
@require_POST
def memory_pin(request: HttpRequest, pk: int) -> HttpResponse:
    memory = _memory_or_404(pk)
    pinned = request.POST.get("pinned")
    if pinned not in ("1", "0"):
        messages.error(request, "Say whether to pin (pinned=1) or unpin (pinned=0).")
        return redirect("memory:detail", pk=memory.pk)
    memory_update(memory=memory, pinned=pinned == "1", actor=request.user)
    messages.success(request, "Pinned: always in context." if pinned == "1" else "Unpinned.")
    return redirect("memory:detail", pk=memory.pk)


@role_required("operator")
@require_POST
def memory_remove(request: HttpRequest, pk: int) -> HttpResponse:
    memory = _memory_or_404(pk)
    agent = memory_agent_of(memory=memory)
    memory_delete(memory=memory, actor=request.user)
    messages.success(request, f"Memory {pk} deleted; its history keeps a copy.")
    if agent is None:
        return redirect("memory:index")
    return redirect("memory:agent", slug=agent.slug)
