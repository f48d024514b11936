"""The users page (admins: one role per user, new users) and the password change page."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from agentops.auth import user_role
from agentops.models import AuditEntry
from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.usefixtures("db")


def logged_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def role_groups(user) -> list[str]:  # type: ignore[no-untyped-def]
    return sorted(user.groups.values_list("name", flat=True))


def test_it_changes_a_password_with_the_old_one(charlie):
    client = logged_in(charlie)
    assert reverse("password_change") in client.get(reverse("account")).content.decode()
    wrong = client.post(
        reverse("password_change"),
        {
            "old_password": "nope",
            "new_password1": "a new long phrase 7",
            "new_password2": "a new long phrase 7",
        },
    )
    assert (
        wrong.status_code == 200
        and "Your old password was entered incorrectly" in wrong.content.decode()
    )
    changed = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a new long phrase 7",
            "new_password2": "a new long phrase 7",
        },
    )
    assert changed.status_code == 302 and changed["Location"] == reverse("account")
    assert client.get(reverse("home")).status_code == 200  # still logged in
    charlie.refresh_from_db()
    assert charlie.check_password("a new long phrase 7")
    assert AuditEntry.objects.filter(
        action="password.changed", actor=charlie, target="charlie"
    ).exists()


@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_it_shows_the_users_page_to_admins_only(request, alice, who):
    client = logged_in(request.getfixturevalue(who))
    assert client.get(reverse("users")).status_code == 403
    body = logged_in(alice).get(reverse("users")).content.decode()
    assert 'data-user="alice"' in body and f'data-user="{who}"' in body


def test_it_adds_a_user_with_one_role(alice):
    client = logged_in(alice)
    response = client.post(
        reverse("users"),
        {
            "username": "erin",
            "password1": "erin's long phrase 3",
            "password2": "erin's long phrase 3",
            "role": "operator",
        },
    )
    assert response.status_code == 302
    erin = UserFactory._meta.model.objects.get(username="erin")
    assert role_groups(erin) == ["operator"] and erin.check_password("erin's long phrase 3")
    assert list(
        AuditEntry.objects.filter(target="erin").order_by("pk").values_list("action", "actor")
    ) == [("user.created", alice.pk), ("user.role_set", alice.pk)]
    assert (
        Client()
        .post(reverse("login"), {"username": "erin", "password": "erin's long phrase 3"})
        .status_code
        == 302
    )

    short = client.post(
        reverse("users"),
        {"username": "frank", "password1": "abc", "password2": "abc", "role": "viewer"},
    )
    assert short.status_code == 400 and "This password is too short" in short.content.decode()
    assert not UserFactory._meta.model.objects.filter(username="frank").exists()


def test_it_replaces_every_role_group_with_the_one_chosen(alice, bob):
    # What the Django admin's group widget leaves after choosing "all": bob counted as admin.
    bob.groups.add(*[Group.objects.get_or_create(name=n)[0] for n in ("viewer", "admin")])
    assert user_role(bob) == "admin"
    client = logged_in(alice)
    response = client.post(reverse("user_role", args=[bob.pk]), {"role": "operator"})
    assert response.status_code == 302
    fresh = type(bob).objects.get(pk=bob.pk)  # user_role caches on the instance
    assert role_groups(fresh) == ["operator"] and user_role(fresh) == "operator"
    entry = AuditEntry.objects.get(action="user.role_set", target="bob")
    assert entry.detail == {"role": "operator", "previous": "admin"} and entry.actor == alice

    client.post(reverse("user_role", args=[bob.pk]), {"role": ""})
    assert role_groups(bob) == []


def test_it_refuses_role_changes_that_would_surprise(alice):
    root = UserFactory(username="root")
    root.is_superuser = True
    root.save()
    client = logged_in(alice)
    for target, role, message in (
        (alice, "viewer", "you cannot change your own role"),
        (root, "viewer", "a superuser is always an admin"),
        (UserFactory(username="gina"), "owner", "Choose a role from the list"),
    ):
        page = client.post(reverse("user_role", args=[target.pk]), {"role": role}, follow=True)
        assert message in page.content.decode(), message
    assert role_groups(alice) == ["admin"]
    assert not AuditEntry.objects.filter(action="user.role_set").exists()
