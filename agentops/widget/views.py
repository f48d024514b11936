"""The widget's pages: the admins' key page, the frame end users see, and its JSON API."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from agentops.auth import role_required
from agentops.budgets.services import BudgetExceeded
from agentops.runtime.services import AgentNotLive, RuntimeConflict
from agentops.widget import selectors, services
from agentops.widget.forms import WidgetKeyForm
from agentops.widget.models import WidgetKey
from agentops.widget.services import RateLimited, WidgetRefused
from tracing.platform.errors import ApplicationError, BadRequest, Invalid
from tracing.platform.forms import refusal_message
from tracing.platform.json_input import JsonInputError, json_parse

VISITOR_COOKIE = "aow_visitor"
TOKEN_HEADER = "HTTP_X_WIDGET_TOKEN"  # noqa: S105 - a header name


def _keys_page(
    request: HttpRequest, form: WidgetKeyForm, new: tuple[WidgetKey, str] | None = None
) -> HttpResponse:
    return render(
        request,
        "widget/keys.html",
        {
            "form": form,
            "keys": selectors.widget_key_rows(),
            "refused_days": services.REFUSED_ORIGINS_DAYS,
            "script_url": request.build_absolute_uri(settings.STATIC_URL + "widget.js"),
            "new_key": new[0] if new else None,
            "new_secret": new[1] if new else None,
        },
        status=400 if form.errors else 200,
    )


@role_required("admin")
def keys(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return _keys_page(request, WidgetKeyForm())
    form = WidgetKeyForm(request.POST)
    if not form.is_valid():
        return _keys_page(request, form)
    data = form.values()
    new = services.widget_key_create(actor=request.user, **data)
    # Rendered, not redirected: the secret is shown this once and kept nowhere else.
    return _keys_page(request, WidgetKeyForm(), new)


@require_POST
@role_required("admin")
def key_enabled(request: HttpRequest, key_id: int) -> HttpResponse:
    key = WidgetKey.objects.filter(pk=key_id).first()
    if key is None:
        raise Http404("No such widget key.")
    enabled = request.POST.get("enabled") == "1"
    services.widget_key_set_enabled(key=key, enabled=enabled, actor=request.user)
    messages.success(request, f"{key.name}: {'enabled' if enabled else 'disabled'}.")
    return redirect("widget:keys")


@require_POST
@role_required("admin")
def key_origin_allow(request: HttpRequest, key_id: int) -> HttpResponse:
    """Allow one more origin on a key (the keys page offers it for each refused one)."""
    key = WidgetKey.objects.filter(pk=key_id).first()
    if key is None:
        raise Http404("No such widget key.")
    try:
        key = services.widget_key_origin_allow(
            key=key, origin=request.POST.get("origin", ""), actor=request.user
        )
    except ApplicationError as exc:
        refusal_message(request, exc, refused=f"{key.name} not changed")
    else:
        messages.success(request, f"{key.name}: allowed on {' '.join(key.allowed_origins)}.")
    return redirect("widget:keys")


def _frame_refused(request: HttpRequest, reason: str, status: int = 403) -> HttpResponse:
    return render(request, "widget/refused.html", {"reason": reason}, status=status)


def _client_address(request: HttpRequest) -> str:
    """The connection's address, as for login throttling (behind a proxy, uvicorn's
    --forwarded-allow-ips makes it the client's)."""
    return str(request.META.get("REMOTE_ADDR") or "")


def _host_origin(request: HttpRequest) -> str | None:
    """The origin of the page the widget is on: the browser's Origin, else the Referer's;
    "" for an opaque one ("null"); None if the request names neither."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return selectors.origin_of(origin)
    referer = request.headers.get("Referer")
    return selectors.origin_of(referer) if referer else None


@login_not_required
@require_GET
@xframe_options_exempt
def frame(request: HttpRequest) -> HttpResponse:
    """The chat inside the host page's iframe. Only the key's allowed origins may frame it
    (CSP frame-ancestors; the browser enforces it), and a Referer from elsewhere is refused."""
    key = selectors.widget_key_get(public_key=request.GET.get("key", ""))
    if key is None or not key.enabled:
        return _frame_refused(request, "This chat is not available (unknown or disabled key).")
    agent = request.GET.get("agent", "")
    if agent and agent != key.agent.slug:
        return _frame_refused(request, "This widget key is for another agent.")
    referer = selectors.origin_of(request.headers.get("Referer", ""))
    if referer and referer not in key.allowed_origins:
        services.widget_origin_refused_record(
            key=key, origin=referer, address=_client_address(request)
        )
        return _frame_refused(request, f"This chat may not be embedded on {referer}.")
    visitor = services.visitor_read(key=key, cookie=request.COOKIES.get(VISITOR_COOKIE, ""))
    cookie = None
    if visitor is None:
        try:
            services.address_rate_check(action="visitor", address=_client_address(request))
        except RateLimited as exc:
            refused = _frame_refused(request, str(exc), status=429)
            refused["Retry-After"] = str(exc.retry_after)
            # Framed where the chat would have been, so the end user reads why.
            refused._csp_replace = {"frame-ancestors": list(key.allowed_origins)}  # type: ignore[attr-defined]
            return refused
        cookie = services.visitor_new(key=key)
        visitor = services.visitor_read(key=key, cookie=cookie)
    token = services.enduser_token_issue(key=key, identity=f"visitor:{visitor}")
    response = render(
        request,
        "widget/frame.html",
        {
            "key": key,
            "agent": key.agent,
            "token": token,
            "allowed": key.allowed_origins,
            "scores": range(1, 6),
        },
    )
    response._csp_replace = {"frame-ancestors": list(key.allowed_origins)}  # type: ignore[attr-defined]
    if cookie is not None:
        _set_visitor_cookie(request, response, cookie)
    return response


def _set_visitor_cookie(request: HttpRequest, response: HttpResponse, value: str) -> None:
    """A third-party frame's cookie must be SameSite=None; Secure (and Partitioned, so
    browsers blocking third-party cookies keep it per host site). Over plain http (the
    loopback demo) Secure is impossible: Lax works there because another port of the same
    host is the same site."""
    secure = request.is_secure()
    response.set_cookie(
        VISITOR_COOKIE,
        value,
        max_age=services.VISITOR_MAX_AGE,
        path="/widget/",
        secure=secure,
        httponly=True,
        samesite="None" if secure else "Lax",
    )
    if secure:
        response.cookies[VISITOR_COOKIE]["partitioned"] = True


@login_not_required
@require_GET
def api_available(request: HttpRequest) -> JsonResponse:
    """Whether widget.js should show its launcher on the page asking (a cross-origin GET,
    so the browser names the page's origin): no for an unknown or disabled key or an origin
    the key does not allow (recorded for the key's admins). The frame's CSP still decides;
    this only spares the end user a panel the browser would leave blank."""
    key = selectors.widget_key_get(public_key=request.GET.get("key", ""))
    origin = _host_origin(request)
    available = key is not None and key.enabled
    if key is not None and available and origin is not None and origin not in key.allowed_origins:
        available = False
        services.widget_origin_refused_record(
            key=key, origin=origin, address=_client_address(request)
        )
    response = JsonResponse({"available": available})
    response["Access-Control-Allow-Origin"] = "*"
    response["Cache-Control"] = "private, max-age=60"
    response["Vary"] = "Origin"
    return response


# The key's agent has no published version (an admin saved it in the builder, not published).
NOT_OPEN = "This chat is not open yet. Please try again later."


def _api_error(message: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


def _api_enduser(request: HttpRequest) -> tuple[services.EndUser, WidgetKey]:
    """The caller must be the frame: this site's own origin, with its end-user token."""
    origin = request.headers.get("Origin", "")
    own = selectors.origin_of(request.build_absolute_uri("/"))
    if origin != own:
        raise WidgetRefused(f"calls must come from the chat frame ({own}), not {origin or '?'}")
    return services.enduser_from_token(token=request.META.get(TOKEN_HEADER, ""))


def _refused(exc: ApplicationError) -> JsonResponse:
    """The frame's answer to a refusal, {"error", "field"?}: its contract answers bad input
    with 400 (not the API's 422), and words a conflict for the end user reading it."""
    if isinstance(exc, AgentNotLive):
        return _api_error(NOT_OPEN, 409)
    if isinstance(exc, RuntimeConflict):
        return _api_error("Please wait for the answer to your previous message.", 409)
    if isinstance(exc, BudgetExceeded):  # a plain sentence: no budget's name or figures
        response = _api_error(exc.sentence, exc.status, retry_after=exc.retry_after)
    else:
        response = JsonResponse(exc.body(), status=400 if isinstance(exc, Invalid) else exc.status)
    for name, value in exc.headers().items():  # a 429's Retry-After
        response[name] = value
    return response


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json_parse(request.body or b"{}")
    except JsonInputError as exc:  # a NUL, a lone surrogate, nested too deep
        raise BadRequest(exc.message, field=exc.field or "body") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest("must be JSON", field="body") from exc
    if not isinstance(body, dict):
        raise BadRequest("must be a JSON object", field="body")
    return body


@login_not_required
@csrf_exempt
@require_POST
def api_identify(request: HttpRequest) -> JsonResponse:
    """Switch the frame from the anonymous visitor to the host app's verified user."""
    try:
        _, key = _api_enduser(request)
        services.address_rate_check(action="identify", address=_client_address(request))
        body = _json_body(request)
        token = services.enduser_identify(
            key=key,
            user_id=str(body.get("user_id", "")),
            user_token=str(body.get("user_token", "")),
        )
    except ApplicationError as exc:
        return _refused(exc)
    return JsonResponse({"token": token})


@login_not_required
@csrf_exempt
@require_POST
def api_session(request: HttpRequest) -> JsonResponse:
    """The end user's current conversation (started if none), to follow before posting."""
    try:
        enduser, key = _api_enduser(request)
        session = services.enduser_session_open(
            key=key, enduser=enduser, address=_client_address(request)
        )
    except ApplicationError as exc:
        return _refused(exc)
    return JsonResponse({"session_id": str(session.pk)})


@login_not_required
@csrf_exempt
@require_POST
def api_message(request: HttpRequest) -> JsonResponse:
    try:
        enduser, key = _api_enduser(request)
        body = _json_body(request)
        content = body.get("content")
        if not isinstance(content, str):
            raise BadRequest("a string is required", field="content")
        session = services.enduser_message_post(
            key=key, enduser=enduser, content=content, address=_client_address(request)
        )
    except ApplicationError as exc:
        return _refused(exc)
    return JsonResponse({"session_id": str(session.pk)}, status=201)


@login_not_required
@csrf_exempt
@require_POST
def api_rating(request: HttpRequest) -> JsonResponse:
    """The end user rates the conversation an operator closed: 201 the first time, 200 when
    they change it."""
    try:
        enduser, key = _api_enduser(request)
        body = _json_body(request)
        rating, first = services.enduser_session_rate(
            key=key,
            enduser=enduser,
            session_id=body.get("session_id"),
            score=body.get("score"),
            comment=body.get("comment") or "",
        )
    except ApplicationError as exc:
        return _refused(exc)
    return JsonResponse(
        {"score": rating.score, "comment": rating.comment}, status=201 if first else 200
    )
