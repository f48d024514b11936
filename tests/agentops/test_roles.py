import pytest
from django.urls import reverse

from agentops.auth import api_key_create, api_key_user, hash_api_key
from agentops.models import ApiKey

PAGES = ["home", "account"]


@pytest.mark.parametrize("page", PAGES)
def test_it_sends_anonymous_visitors_to_login(client, db, page):
    response = client.get(reverse(page))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_it_shows_home_to_a_viewer(client, charlie):
    client.force_login(charlie)
    response = client.get(reverse("home"))
    assert response.status_code == 200
    assert b"Services" in response.content


def test_it_refuses_home_to_a_user_without_role(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="dave"))
    assert client.get(reverse("home")).status_code == 403


def test_it_keeps_the_admin_for_admins(client, alice, bob):
    client.force_login(bob)
    assert client.get("/admin/").status_code == 302
    alice.is_staff = True
    alice.save()
    client.force_login(alice)
    assert client.get("/admin/").status_code == 200


def test_it_logs_in_with_a_password(client, alice):
    response = client.post(
        reverse("login"), {"username": "alice", "password": "correct horse battery staple"}
    )
    assert response.status_code == 302
    assert client.get(reverse("home")).status_code == 200


def test_it_stores_only_the_hash_of_an_api_key(alice):
    row, raw = api_key_create(user=alice, name="ci")
    assert raw not in str(ApiKey.objects.values_list("key_hash", "prefix", "name").get())
    assert row.key_hash == hash_api_key(raw)
    assert api_key_user(raw) == alice
    assert api_key_user(raw + "x") is None


def test_it_creates_an_api_key_on_the_account_page(client, charlie):
    client.force_login(charlie)
    response = client.post(reverse("account"), {"name": "laptop"})
    assert response.status_code == 200
    raw = response.context["new_key"]
    assert raw.startswith("ao_") and api_key_user(raw) == charlie
    again = client.get(reverse("account"))
    assert raw not in again.content.decode()


def test_it_sets_a_nonce_based_csp(client, charlie):
    client.force_login(charlie)
    header = client.get(reverse("home"))["Content-Security-Policy"]
    assert "'nonce-" in header and "unsafe-inline" not in header


def test_role_require_is_one_refusal_a_403_on_every_door(client, charlie, client_as):
    """A missing role is `Forbidden` from agentops.auth.role_require: a 403 page when a view
    asks for more than its page needs (a viewer posting a dataset on a page viewers read), a
    403 with the API's body from a router, and nothing written either way."""
    from agentops.auth import role_require
    from agentops.experiments.models import Dataset
    from tests.kit import bearer
    from tracing.platform.errors import Forbidden

    with pytest.raises(Forbidden) as refused:
        role_require(user=charlie, role="operator")
    assert refused.value.status == 403 and str(refused.value) == "this needs the operator role"
    role_require(user=charlie, role="viewer")

    page = client_as(charlie)
    assert page.get(reverse("experiments:datasets")).status_code == 200
    assert page.post(reverse("experiments:datasets"), {"name": "x"}).status_code == 403
    api = client.post(
        "/api/datasets", {"name": "y"}, content_type="application/json", **bearer(charlie)
    )
    assert api.status_code == 403
    assert api.json() == {"error": "this needs the operator role"}
    assert not Dataset.objects.exists()
    assert (
        client_as("operator").post(reverse("experiments:datasets"), {"name": "z"}).status_code
        == 302
    )
    assert list(Dataset.objects.values_list("name", flat=True)) == ["z"]


def test_role_holders_filters_the_people_has_role_says_yes_to(db):
    """`role_holders` is has_role as a query: a higher role counts, a superuser is an admin
    whatever its groups, someone in no role group is nobody (and `has_role` also asks for an
    active account, which the filter leaves to its caller)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from agentops.auth import ROLES, has_role, role_holders
    from tests.factories import UserFactory

    people = [UserFactory(role=role) for role in ROLES]
    people += [UserFactory(), UserFactory(is_superuser=True)]
    two = UserFactory(role="viewer")
    two.groups.add(Group.objects.get(name="admin"))  # two role groups: the higher one counts
    people.append(two)
    for role in ROLES:
        found = get_user_model().objects.filter(role_holders(role)).distinct()
        assert {u.pk for u in found} == {u.pk for u in people if has_role(u, role)}, role
