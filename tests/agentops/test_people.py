"""The people page (admins): one-time invitation links, one role, teams, deactivation; where
each role lands after login; the Django admin's user page offers one role, not group pickers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session as LoginSession
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from agentops.auth import hash_api_key, user_role
from agentops.models import AuditEntry, Invitation, Team
from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new phrase 42"
pytestmark = pytest.mark.usefixtures("db")


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def invite(client: Client, **data) -> str:  # type: ignore[no-untyped-def]
    """Create an invitation on the people page; the token from the link it shows."""
    response = client.post(reverse("user_invite"), {"role": "operator", **data})
    assert response.status_code == 201, response.content.decode()
    match = re.search(r'value="http://testserver/invite/#([^"]+)"', response.content.decode())
    assert match, "the page shows the link, its token in the fragment"
    return match.group(1)


def accept(token: str, username: str = "erin"):  # type: ignore[no-untyped-def]
    return Client().post(
        reverse("invitation_accept"),
        {
            "token": token,
            "username": username,
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
        },
    )


def test_it_invites_with_a_link_that_gives_the_role_and_teams_chosen(alice):
    billing = Team.objects.create(slug="billing", name="Billing")
    Team.objects.create(slug="sales", name="Sales")
    token = invite(logged_in(alice), role="operator", teams=[billing.pk], note="Erin, night shift")
    invitation = Invitation.objects.get()
    assert invitation.token_hash == hash_api_key(token)  # only the hash is stored
    assert not Invitation.objects.filter(token_hash=token).exists()

    form = Client().get(reverse("invitation_accept"))
    assert form.status_code == 200 and 'name="token"' in form.content.decode()
    response = accept(token)
    assert response.status_code == 302 and response["Location"] == reverse("login")
    welcome = response.client.get(reverse("login")).content.decode()
    assert "Welcome, erin: you joined as operator in Billing." in welcome
    erin = type(alice).objects.get(username="erin")
    assert user_role(erin) == "operator" and erin.check_password(NEW_PASSWORD)
    assert list(erin.teams.values_list("slug", flat=True)) == ["billing"]
    invitation.refresh_from_db()
    assert invitation.accepted_by == erin and invitation.accepted_at is not None
    assert list(AuditEntry.objects.order_by("pk").values_list("action", "actor")) == [
        ("invitation.created", alice.pk),
        ("invitation.accepted", erin.pk),
    ]
    assert AuditEntry.objects.get(action="invitation.accepted").detail["teams"] == ["billing"]


def test_it_keeps_the_form_and_the_invitation_when_the_password_is_refused(alice):
    token = invite(logged_in(alice))
    weak = Client().post(
        reverse("invitation_accept"),
        {"token": token, "username": "erin", "password1": "abc", "password2": "abc"},
    )
    body = weak.content.decode()
    assert weak.status_code == 400 and "This password is too short" in body
    assert f'value="{token}"' in body  # the page keeps the token for the next try
    assert accept(token).status_code == 302


def test_it_accepts_an_invitation_once(alice):
    token = invite(logged_in(alice))
    assert accept(token, "erin").status_code == 302
    again = accept(token, "frank")
    assert again.status_code == 410 and "was used already" in again.content.decode()
    assert not type(alice).objects.filter(username="frank").exists()


def test_it_refuses_an_expired_or_withdrawn_invitation(alice, settings):
    client = logged_in(alice)
    token = invite(client)
    settings.INVITATION_DAYS = 7
    invitation = Invitation.objects.get()
    assert timedelta(days=6, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=7)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = accept(token)
    assert expired.status_code == 410 and "has expired" in expired.content.decode()
    assert not type(alice).objects.filter(username="erin").exists()

    token = invite(client)
    pending = client.get(reverse("users")).content.decode()
    withdrawn = Invitation.objects.filter(expires_at__gt=timezone.now()).get()
    assert f'data-invitation="{withdrawn.pk}"' in pending
    client.post(reverse("invitation_withdraw", args=[withdrawn.pk]))
    gone = accept(token)
    assert gone.status_code == 410 and "was withdrawn" in gone.content.decode()
    assert AuditEntry.objects.filter(action="invitation.revoked", actor=alice).exists()
    unknown = accept("not-a-real-token")
    assert unknown.status_code == 410 and "not valid" in unknown.content.decode()
    assert not type(alice).objects.filter(username="erin").exists()


def test_it_asks_for_a_role_from_the_list_when_inviting(alice, bob):
    response = logged_in(alice).post(reverse("user_invite"), {"role": "owner"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    assert not Invitation.objects.exists()
    assert logged_in(bob).post(reverse("user_invite"), {"role": "viewer"}).status_code == 403


def test_it_offers_one_role_per_person(alice, bob):
    body = logged_in(alice).get(reverse("users")).content.decode()
    role_select = re.search(rf'<select name="role" id="role-{bob.pk}"[^>]*>', body)
    assert role_select and "multiple" not in role_select.group(0)
    assert 'type="radio" name="role"' in body  # the invitation's role
    assert 'name="groups"' not in body


def test_it_sets_a_persons_teams(alice, bob):
    billing = Team.objects.create(slug="billing", name="Billing")
    sales = Team.objects.create(slug="sales", name="Sales")
    client = logged_in(alice)
    client.post(reverse("user_teams", args=[bob.pk]), {"teams": [billing.pk, sales.pk]})
    assert sorted(bob.teams.values_list("slug", flat=True)) == ["billing", "sales"]
    client.post(reverse("user_teams", args=[bob.pk]), {"teams": [sales.pk]})
    assert list(billing.members.all()) == [] and list(sales.members.all()) == [bob]
    entries = AuditEntry.objects.filter(action="user.teams_set", target="bob").order_by("pk")
    assert [e.detail for e in entries] == [
        {"teams": ["billing", "sales"], "previous": []},
        {"teams": ["sales"], "previous": ["billing", "sales"]},
    ]


def test_it_deactivates_a_person_and_ends_their_logins_at_once(alice, bob):
    bobs = logged_in(bob)
    assert bobs.get(reverse("operators:queue")).status_code == 200
    admin = logged_in(alice)
    response = admin.post(reverse("user_active", args=[bob.pk]), {"active": "0"})
    assert response.status_code == 302
    bob.refresh_from_db()
    assert not bob.is_active
    assert bobs.get(reverse("operators:queue")).status_code == 302  # to the login page
    assert not [
        s for s in LoginSession.objects.all() if s.get_decoded().get("_auth_user_id") == str(bob.pk)
    ]
    refused = Client().post(reverse("login"), {"username": "bob", "password": PASSWORD})
    assert refused.status_code == 200 and "_auth_user_id" not in refused.client.session

    admin.post(reverse("user_active", args=[bob.pk]), {"active": "1"})
    bob.refresh_from_db()
    assert bob.is_active and bobs.get(reverse("operators:queue")).status_code == 302
    assert list(
        AuditEntry.objects.filter(target="bob").order_by("pk").values_list("action", flat=True)
    ) == ["user.deactivated", "user.activated"]


def test_it_lets_no_admin_deactivate_themselves(alice):
    page = logged_in(alice).post(
        reverse("user_active", args=[alice.pk]), {"active": "0"}, follow=True
    )
    assert "you cannot deactivate yourself" in page.content.decode()
    alice.refresh_from_db()
    assert alice.is_active


@pytest.mark.parametrize(
    ("who", "landing"), [("bob", "operators:queue"), ("alice", "home"), ("charlie", "home")]
)
def test_it_lands_each_role_on_its_page_after_login(request, who, landing):
    request.getfixturevalue(who)
    response = Client().post(reverse("login"), {"username": who, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse(landing)
    asked = Client().post(
        reverse("login") + "?next=/console/",
        {"username": who, "password": PASSWORD, "next": "/console/"},
    )
    assert asked["Location"] == "/console/"  # a page asked for wins


@pytest.fixture
def superuser_client(alice) -> Client:
    alice.is_staff = alice.is_superuser = True
    alice.save()
    return logged_in(alice)


def admin_user_form(user) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "username": user.username,
        "first_name": "",
        "last_name": "",
        "email": "",
        "is_active": "on",
        "last_login_0": "",
        "last_login_1": "",
        "date_joined_0": user.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
    }


def test_it_offers_one_role_not_groups_in_the_django_admin(superuser_client, bob):
    url = reverse("admin:auth_user_change", args=[bob.pk])
    page = superuser_client.get(url).content.decode()
    assert 'name="groups"' not in page and 'name="user_permissions"' not in page
    role_select = re.search(r'<select name="role"[^>]*>', page)
    assert role_select and "multiple" not in role_select.group(0)
    assert '<option value="operator" selected>' in page

    # Whatever is posted for groups is ignored: only the one role counts.
    admin_group = Group.objects.get_or_create(name="admin")[0]
    response = superuser_client.post(
        url, {**admin_user_form(bob), "role": "viewer", "groups": [admin_group.pk]}
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    fresh = type(bob).objects.get(pk=bob.pk)
    assert user_role(fresh) == "viewer"
    assert sorted(fresh.groups.values_list("name", flat=True)) == ["viewer"]
    assert AuditEntry.objects.get(action="user.role_set", target="bob").detail == {
        "role": "viewer",
        "previous": "operator",
    }


def test_it_deactivates_through_the_django_admin_like_the_people_page(superuser_client, bob):
    bobs = logged_in(bob)
    form = {**admin_user_form(bob), "role": "operator"}
    del form["is_active"]
    response = superuser_client.post(reverse("admin:auth_user_change", args=[bob.pk]), form)
    assert response.status_code == 302
    assert bobs.get(reverse("operators:queue")).status_code == 302
    assert AuditEntry.objects.filter(action="user.deactivated", target="bob").exists()
    assert not AuditEntry.objects.filter(action="user.role_set").exists()


def test_it_keeps_created_users_of_the_django_admin_without_a_role(superuser_client):
    response = superuser_client.post(
        reverse("admin:auth_user_add"),
        {"username": "hank", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    hank = UserFactory._meta.model.objects.get(username="hank")
    assert user_role(hank) is None
