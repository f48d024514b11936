"""The people's pages: your account (API keys, password), People (roles, teams, activation,
invitations) and Teams. Reached by URL name only (agentops/people/urls.py, included
without a namespace)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required, login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.views.decorators.http import require_POST

from agentops import auth
from agentops.auth import api_key_create, role_required
from agentops.events import audit_record
from agentops.models import ApiKey, Invitation, Team
from agentops.people.forms import (
    ROLE_CHOICES,
    AcceptInvitationForm,
    InviteForm,
    RoleForm,
    TeamForm,
    UserCreateForm,
    UserTeamsForm,
)
from agentops.people.selectors import (
    invitation_by_token,
    invitations_pending,
    team_get,
    team_rows,
    teams_all,
    users_list,
)
from agentops.people.services import (
    InvitationUnusable,
    invitation_accept,
    invitation_create,
    invitation_revoke,
    invitation_usable,
    team_save,
    user_active_set,
    user_create,
    user_role_set,
    user_teams_set,
)
from tracing.platform.errors import ApplicationError
from tracing.platform.forms import refusal_message


@login_required
def account(request: HttpRequest) -> HttpResponse:
    new_key = None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name or len(name) > 100 or "\x00" in name:
            messages.error(request, "Give the key a name of 1 to 100 characters (no NUL).")
        else:
            _, new_key = api_key_create(user=request.user, name=name)
    keys = ApiKey.objects.filter(user_id=request.user.pk or 0).order_by("-created_at")
    return render(request, "agentops/account.html", {"keys": keys, "new_key": new_key})


@login_required
@require_POST
def api_key_delete(request: HttpRequest, key_id: int) -> HttpResponse:
    if not auth.api_key_delete(user=request.user, key_id=key_id):  # its streams end too
        raise Http404("no such key")
    messages.success(request, "API key revoked.")
    return redirect("account")


class PasswordChange(auth_views.PasswordChangeView):
    """`/account/password/`: every user changes their own password (old one required)."""

    template_name = "agentops/password_change.html"
    success_url = reverse_lazy("account")

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        user = self.request.user
        audit_record(actor=user, action="password.changed", target=user.get_username())
        messages.success(self.request, "Password changed.")
        return response


def people_page(
    request: HttpRequest,
    *,
    form: UserCreateForm | None = None,
    invite_form: InviteForm | None = None,
    invite_link: str = "",
    status: int = 200,
) -> HttpResponse:
    context = {
        "rows": users_list(),
        "form": form or UserCreateForm(),
        "invite_form": invite_form or InviteForm(),
        "invite_link": invite_link,
        "invitation_days": settings.INVITATION_DAYS,
        "invitations": invitations_pending(),
        "teams": teams_all(),
        "role_choices": ROLE_CHOICES,
    }
    return render(request, "agentops/users.html", context, status=status)


@role_required("admin")
def users(request: HttpRequest) -> HttpResponse:
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = user_create(form=form, role=form.cleaned_data["role"], actor=request.user)
        messages.success(request, f"Created {user.get_username()}.")
        return redirect("users")
    return people_page(request, form=form, status=400 if form.errors else 200)


@role_required("admin")
@require_POST
def user_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if not form.is_valid():
        return people_page(request, invite_form=form, status=400)
    _, token = invitation_create(
        role=form.cleaned_data["role"],
        teams=form.cleaned_data["teams"],
        note=form.cleaned_data["note"],
        actor=request.user,
    )
    # Shown once, on this page only: only the link's hash is stored.
    link = request.build_absolute_uri(reverse("invitation_accept")) + "#" + token
    return people_page(request, invite_link=link, status=201)


@role_required("admin")
@require_POST
def invitation_withdraw(request: HttpRequest, invitation_id: int) -> HttpResponse:
    invitation_revoke(
        invitation=get_object_or_404(Invitation, pk=invitation_id), actor=request.user
    )
    messages.success(request, "Invitation withdrawn: its link no longer works.")
    return redirect("users")


@login_not_required
def invitation_accept_view(request: HttpRequest) -> HttpResponse:
    """The token travels in the link's fragment (never sent in a request line, so never in
    access logs); the page's script posts it with the form."""
    form = AcceptInvitationForm(request.POST or None)
    token = request.POST.get("token", "")
    if request.method == "POST":
        try:
            invitation_usable(invitation_by_token(token=token))
            if form.is_valid():
                user = invitation_accept(token=token, form=form)
                teams = ", ".join(t.name for t in user.teams.order_by("slug"))
                messages.success(
                    request,
                    f"Welcome, {user.get_username()}: you joined as "
                    f"{auth.user_role(user)}{f' in {teams}' if teams else ''}. Sign in to start.",
                )
                return redirect("login")
        except InvitationUnusable as exc:
            return render(request, "agentops/invitation.html", {"unusable": str(exc)}, status=410)
    context = {"form": form, "token": token}
    return render(request, "agentops/invitation.html", context, status=400 if form.errors else 200)


@role_required("admin")
@require_POST
def user_role(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=user_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role from the list.")
        return redirect("users")
    role = form.cleaned_data["role"]
    try:
        user_role_set(user=user, role=role, actor=request.user)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not changed")
    else:
        messages.success(request, f"{user.get_username()}: {role or 'no role'}.")
    return redirect("users")


@role_required("admin")
@require_POST
def user_teams(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=user_id)
    form = UserTeamsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose teams from the list.")
        return redirect("users")
    user_teams_set(user=user, teams=form.cleaned_data["teams"], actor=request.user)
    messages.success(request, f"{user.get_username()}: teams saved.")
    return redirect("users")


@role_required("admin")
@require_POST
def user_active(request: HttpRequest, user_id: int) -> HttpResponse:
    user = get_object_or_404(get_user_model(), pk=user_id)
    active = request.POST.get("active") == "1"
    try:
        user_active_set(user=user, active=active, actor=request.user)
    except ApplicationError as exc:
        refusal_message(request, exc, refused="Not changed")
    else:
        state = "reactivated" if active else "deactivated: signed out everywhere"
        messages.success(request, f"{user.get_username()} {state}.")
    return redirect("users")


@role_required("admin")
def teams(request: HttpRequest) -> HttpResponse:
    return team_form_page(request, team=None)


@role_required("admin")
def team_edit(request: HttpRequest, slug: str) -> HttpResponse:
    team = team_get(slug=slug)
    if team is None:
        raise Http404("no such team")
    return team_form_page(request, team=team)


def team_form_page(request: HttpRequest, *, team: Team | None) -> HttpResponse:
    form = TeamForm(request.POST or None, team=team)
    if request.method == "POST" and form.is_valid():
        saved = team_save(
            team=team,
            slug=form.cleaned_data["slug"],
            name=form.cleaned_data["name"],
            timezone_name=form.cleaned_data["timezone"],
            working_hours=form.cleaned_data["working_hours"],
            members=form.cleaned_data["members"],
            actor=request.user,
            policy=form.policy(),
        )
        messages.success(request, f"Team {saved.slug} saved.")
        return redirect("teams")
    context = {"rows": team_rows() if team is None else [], "form": form, "team": team}
    template = "agentops/teams.html" if team is None else "agentops/team_edit.html"
    return render(request, template, context, status=400 if form.errors else 200)
