"""The people's pages, included at the site's root without a namespace: their URL names
(`users`, `team_edit`, `invitation_accept`, ...) are the ones the templates and tests use."""

from django.urls import path

from agentops.people import views

urlpatterns = [
    path("account/", views.account, name="account"),
    path("account/keys/<int:key_id>/delete", views.api_key_delete, name="api_key_delete"),
    path("account/password/", views.PasswordChange.as_view(), name="password_change"),
    path("users/", views.users, name="users"),
    path("users/<int:user_id>/role", views.user_role, name="user_role"),
    path("users/<int:user_id>/teams", views.user_teams, name="user_teams"),
    path("users/<int:user_id>/active", views.user_active, name="user_active"),
    path("users/invite", views.user_invite, name="user_invite"),
    path(
        "users/invitations/<int:invitation_id>/withdraw",
        views.invitation_withdraw,
        name="invitation_withdraw",
    ),
    path("invite/", views.invitation_accept_view, name="invitation_accept"),
    path("teams/", views.teams, name="teams"),
    path("teams/<slug:slug>/", views.team_edit, name="team_edit"),
]
