"""CSAT: after an operator closes a conversation, the end user rates it (1-5 and a comment) in
the console and through the API; the figures show it per operator, team and agent."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from agentops.models import HandoffRating, Team
from agentops.operators.assignment.services import handoff_claim
from agentops.operators.ratings.selectors import csat_figures
from agentops.operators.work.services import handoff_close
from tests.agentops.operators.helpers import make_handoff
from tests.factories import AgentFactory, UserFactory

pytestmark = pytest.mark.django_db


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def closed_by(user, **extra):
    handoff = make_handoff(**extra)
    handoff_claim(handoff_id=handoff.pk, user=user)
    handoff.refresh_from_db()
    return handoff_close(handoff=handoff, user=user)


def test_it_takes_one_rating_per_closed_handoff_through_the_api(bob):
    handoff = closed_by(bob)
    api = client_for(bob)
    url = f"/api/sessions/{handoff.session_id}/rating"
    assert api.get(url).status_code == 404
    first = api.post(url, {"score": 4, "comment": "Quick, thanks"}, content_type="application/json")
    assert first.status_code == 201, first.json()
    assert first.json()["score"] == 4 and first.json()["operator"] == "bob"
    again = api.post(url, {"score": 2}, content_type="application/json")
    assert again.status_code == 200  # rating again replaces it
    assert HandoffRating.objects.get().score == 2 and HandoffRating.objects.get().comment == ""
    assert api.get(url).json()["score"] == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"score": 6}, "score"),
        ({"score": 0}, "score"),
        ({"score": "5"}, "score"),
        ({"score": True}, "score"),
        ({"score": 4.5}, "score"),
        ({}, "score"),
        ({"score": 3, "comment": "x" * 2001}, "comment"),
        ({"score": 3, "comment": "a\x00b"}, "comment"),
    ],
)
def test_it_refuses_bad_ratings_naming_the_field(bob, body, field):
    handoff = closed_by(bob)
    response = client_for(bob).post(
        f"/api/sessions/{handoff.session_id}/rating", body, content_type="application/json"
    )
    assert response.status_code == 422
    assert response.json()["field"] == field
    assert not HandoffRating.objects.exists()


def test_it_refuses_to_rate_a_conversation_no_operator_closed(bob, charlie):
    open_one = make_handoff()
    api = client_for(bob)
    response = api.post(
        f"/api/sessions/{open_one.session_id}/rating", {"score": 5}, content_type="application/json"
    )
    assert response.status_code == 409
    assert "closed" in response.json()["error"]
    viewer = client_for(charlie).post(
        f"/api/sessions/{open_one.session_id}/rating", {"score": 5}, content_type="application/json"
    )
    assert viewer.status_code == 403


def test_it_lets_the_end_user_rate_in_the_console(bob):
    handoff = closed_by(bob)
    console = client_for(bob)
    page = console.get(f"/console/sessions/{handoff.session_id}/").content.decode()
    assert "How did we do?" in page and 'name="score"' in page
    url = f"/console/sessions/{handoff.session_id}/rating"
    bad = console.post(url, {"score": "9"}, headers={"HX-Request": "true"})
    assert bad["X-Rating-Status"] == "400" and "score:" in bad.content.decode()
    good = console.post(url, {"score": "5", "comment": "Great"}, headers={"HX-Request": "true"})
    assert good["X-Rating-Status"] == "200" and "Thank you for your rating" in good.content.decode()
    assert "You rated this conversation 5 / 5" in good.content.decode()
    rating = HandoffRating.objects.get()
    assert (rating.score, rating.comment, rating.rated_by) == (5, "Great", bob)
    assert rating.end_user == handoff.session.external_user


def test_it_shows_csat_per_operator_team_and_agent(alice, bob, charlie):
    dave = UserFactory(username="dave", role="operator")
    team = Team.objects.create(slug="billing", name="Billing")
    agent = AgentFactory(slug="helper")
    ratings = [(bob, 5), (bob, 4), (bob, 1), (dave, 2)]
    for user, score in ratings:
        handoff = closed_by(user, agent=agent, team=team if user == bob else None)
        HandoffRating.objects.create(handoff=handoff, score=score)
    figures = csat_figures(since=timezone.now() - timezone.timedelta(days=1))
    by_operator = {r["name"]: r for r in figures["operators"]}
    assert by_operator["bob"]["ratings"] == 3 and by_operator["bob"]["csat"] == pytest.approx(2 / 3)
    assert by_operator["dave"]["average"] == 2 and by_operator["dave"]["csat"] == 0
    assert {r["name"]: r["ratings"] for r in figures["teams"]} == {"billing": 3, "(none)": 1}
    assert figures["agents"][0]["name"] == "helper" and figures["agents"][0]["ratings"] == 4
    page = client_for(charlie).get("/operators/").content.decode()
    assert "Satisfaction (CSAT)" in page and 'data-csat-by="operators"' in page
    assert "<td>bob</td><td>3</td><td>3.3 / 5</td><td>67 %</td>" in page
    assert "<td>helper</td><td>4</td><td>3.0 / 5</td><td>50 %</td>" in page


def test_it_documents_the_rating_in_the_openapi_schema(charlie):
    schema = client_for(charlie).get("/api/openapi.json").json()
    operation = schema["paths"]["/api/sessions/{session_id}/rating"]
    assert set(operation) == {"get", "post"}
    assert "RatingIn" in schema["components"]["schemas"]
