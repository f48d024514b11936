"""The browser console: pick an agent, open a session, talk to it and watch it work."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import role_required
from agentops.console import selectors
from agentops.conversation import conversation_serialise
from agentops.models import ACTIVE_RUN_STATUSES, Agent, Run, Session
from agentops.operators.ratings.selectors import handoff_rating_get
from agentops.operators.ratings.services import handoff_rate
from agentops.runtime.services import MAX_MESSAGE_CHARS, session_create, session_post_message
from agentops.selectors import conversation_get
from tracing.platform.errors import ApplicationError, Invalid
from tracing.platform.forms import form_errors_from, form_submit
from tracing.platform.types import SessionId
from tracing.platform.web import HtmxHttpRequest


class SessionForm(forms.Form):
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.none(), to_field_name="slug", empty_label=None
    )
    external_user = forms.CharField(
        max_length=200, required=False, help_text="Who the end user is (e.g. a customer id)."
    )
    title = forms.CharField(max_length=200, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        agent_field = self.fields["agent"]
        assert isinstance(agent_field, forms.ModelChoiceField)
        agent_field.queryset = selectors.agents_list().live()
        agent_field.help_text = (
            "Agents with a published version; try an unpublished one in its builder's draft chat."
        )
        agent_field.label_from_instance = lambda agent: f"{agent.name} ({agent.slug})"  # type: ignore[method-assign,assignment]


class MessageForm(forms.Form):
    content = forms.CharField(
        max_length=MAX_MESSAGE_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Write a message…"}),
    )

    def clean_content(self) -> str:
        content = self.cleaned_data["content"]
        if not content.strip():
            raise forms.ValidationError("Write something first.")
        return content


class RatingForm(forms.Form):
    score = forms.TypedChoiceField(
        choices=[(n, str(n)) for n in range(1, 6)], coerce=int, widget=forms.RadioSelect
    )
    comment = forms.CharField(
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Tell us more (optional)"}),
    )


def _session_or_404(session_id: SessionId) -> Session:
    session = selectors.session_get(session_id=session_id)
    if session is None:
        raise Http404("No such session.")
    return session


@role_required("viewer")
@require_GET
def index(request: HtmxHttpRequest) -> HttpResponse:
    query = request.GET.get("q", "")
    agent = request.GET.get("agent", "")
    context = {
        "agents": selectors.agents_list(),
        "sessions": selectors.sessions_search(query=query, agent=agent),
        "q": query,
        "agent_filter": agent,
        "form": SessionForm(initial={"external_user": request.user.get_username()}),
    }
    template = "console/index.html#sessions" if request.htmx else "console/index.html"
    return render(request, template, context)


@role_required("operator")
@require_POST
def session_new(request: HtmxHttpRequest) -> HttpResponse:
    form = SessionForm(request.POST)
    session = form_submit(
        request,
        form,
        lambda: session_create(
            agent=form.cleaned_data["agent"],
            external_user=form.cleaned_data["external_user"],
            title=form.cleaned_data["title"],
            created_by=request.user,
        ),
    )
    if session is None:
        context = {
            "agents": selectors.agents_list(),
            "sessions": selectors.sessions_search(),
            "q": "",
            "agent_filter": "",
            "form": form,
        }
        return render(request, "console/index.html", context, status=400)
    return redirect("console:session", session_id=session.pk)


def _session_context(session: Session, form: MessageForm | None = None) -> dict[str, Any]:
    conversation = conversation_get(session=session)
    return {
        "session": session,
        "items": conversation.items,
        "run": conversation.run,
        "busy_run": _active_run_id(conversation.run),
        "form": form or MessageForm(),
        **_rating_context(session),
    }


def _active_run_id(run: Run | None) -> str:
    """The run the composer waits for (a message sent meanwhile would be refused), or ""."""
    return str(run.pk) if run is not None and run.status in ACTIVE_RUN_STATUSES else ""


def _rating_context(session: Session, form: RatingForm | None = None) -> dict[str, Any]:
    rating = handoff_rating_get(session_id=session.pk)
    initial = {"score": rating.score, "comment": rating.comment} if rating else None
    return {"rating": rating, "rating_form": form or RatingForm(initial=initial)}


def _htmx_answer(
    request: HtmxHttpRequest, fragment: str, context: dict[str, Any], header: str, status: int
) -> HttpResponse:
    """A form's fragment for htmx, which only swaps 2xx answers: errors come back as 200 with
    the form's errors shown, and the real status in `header`."""
    response = render(request, fragment, context)
    response[header] = str(status)
    return response


@role_required("operator")
@require_POST
def session_rate(request: HtmxHttpRequest, session_id: SessionId) -> HttpResponse:
    """The end user rates the conversation an operator closed (1-5 and a comment)."""
    session = _session_or_404(session_id)
    form = RatingForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            handoff_rate(
                session_id=session.pk,
                score=form.cleaned_data["score"],
                comment=form.cleaned_data["comment"],
                rated_by=request.user,
            )
        except ApplicationError as exc:
            form_errors_from(form, exc)
            status = exc.status
        else:
            status = 200
    rated = status == 200
    if not request.htmx:
        if rated:
            messages.success(request, "Thank you for your rating.")
        else:
            messages.error(request, " ".join(str(e) for e in form.errors.values()))
        return redirect("console:session", session_id=session.pk)
    context = {
        "session": session,
        **_rating_context(session, None if rated else form),
        "rated": rated,
    }
    return _htmx_answer(request, "console/session.html#rating", context, "X-Rating-Status", status)


@role_required("viewer")
@require_GET
def session_detail(request: HtmxHttpRequest, session_id: SessionId) -> HttpResponse:
    session = _session_or_404(session_id)
    return render(request, "console/session.html", _session_context(session))


@role_required("operator")
@require_POST
def session_send(request: HtmxHttpRequest, session_id: SessionId) -> HttpResponse:
    session = _session_or_404(session_id)
    form = MessageForm(request.POST)
    status = 200
    notice = ""
    busy_run = ""
    if form.is_valid():
        try:
            run = session_post_message(
                session=session, content=form.cleaned_data["content"], author=request.user
            )
        except ApplicationError as exc:
            form_errors_from(form, exc, fallback="content")
            status = 400 if isinstance(exc, Invalid) else exc.status
        else:
            if run is None:
                notice = "A human operator has this conversation; your message was passed on."
            busy_run = _active_run_id(run)
            form = MessageForm()
    else:
        status = 400
    if not request.htmx:
        if status != 200:
            messages.error(request, " ".join(str(e) for e in form.errors.get("content", [])))
        return redirect("console:session", session_id=session.pk)
    context = {"session": session, "form": form, "notice": notice, "busy_run": busy_run}
    return _htmx_answer(request, "console/session.html#composer", context, "X-Send-Status", status)


@role_required("viewer")
@require_GET
def session_items(request: HtmxHttpRequest, session_id: SessionId) -> HttpResponse:
    """The stored messages the page has not shown as they are now: those above seq `after`,
    those whose tool result came after it, and those holding one of the `call` ids. The
    conversation view inserts them as they come (the one renderer of a message)."""
    session = _session_or_404(session_id)
    try:
        after = int(request.GET.get("after", "0"))
    except ValueError:
        return HttpResponse("after: not a message number", status=400, content_type="text/plain")
    calls = set(request.GET.getlist("call"))
    items = [
        item
        for item in conversation_get(session=session).items
        if item.changed_since(after) or any(tc.call_id in calls for tc in item.tool_calls)
    ]
    return render(request, "console/session.html#items", {"session": session, "items": items})


@role_required("viewer")
@require_GET
def session_tool_calls(request: HtmxHttpRequest, session_id: SessionId) -> JsonResponse:
    session = _session_or_404(session_id)
    return JsonResponse(
        {"tool_calls": conversation_serialise(conversation_get(session=session))["tool_calls"]}
    )
