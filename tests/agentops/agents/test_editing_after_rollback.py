"""After a rollback the builder edits the latest saved version, the one its draft chat runs,
and says which one is published (issue 21 item 8); a save never silently undoes a version."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from agentops.agents.services import (
    agent_create,
    agent_update,
    agent_version_publish,
)
from agentops.agents.views import DRAFT_KEY
from agentops.models import Agent, AgentVersion
from agentops.runtime.drafts import draft_session_start
from tests.agentops.agents.test_views import form_data
from tests.factories import EndpointFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def rolled_back(alice):  # type: ignore[no-untyped-def]
    """support: v1 "Be brief." published, v2 "Be thorough." published, then v1 again."""
    endpoint = EndpointFactory(name="main")
    v1 = agent_create(
        slug="support",
        config={"name": "Support", "endpoint": endpoint.pk, "system_prompt": "Be brief."},
        author=alice,
        publish=True,
    )
    agent = Agent.objects.get(slug="support")
    agent_update(agent=agent, changes={"system_prompt": "Be thorough."}, author=alice, publish=True)
    agent_version_publish(version=v1, actor=alice)
    return Agent.objects.get(slug="support")


def test_the_builder_edits_the_latest_version_and_says_which_is_published(rolled_back, alice):  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(alice)
    draft = draft_session_start(agent=rolled_back, author=alice)
    session = client.session
    session[DRAFT_KEY.format(slug="support")] = str(draft.pk)
    session.save()
    response = client.get("/agents/support/")
    page = response.content.decode()
    assert response.context["form"].initial["system_prompt"] == "Be thorough."
    assert response.context["draft"].agent_version.number == 2
    assert "Editing" in page and "v2</a> (latest)" in page and "Published:" in page
    assert 'name="based_on" value="2"' in page

    # Saving a change from that form keeps v2's instructions.
    data = form_data(rolled_back, name="Support desk", system_prompt="Be thorough.")
    response = client.post("/agents/support/", {**data, "based_on": "2", "save": "1"})
    assert response.status_code == 302
    v3 = AgentVersion.objects.get(agent=rolled_back, number=3)
    assert v3.config["system_prompt"] == "Be thorough." and v3.config["name"] == "Support desk"
    rolled_back.refresh_from_db()
    assert rolled_back.published_version.number == 1  # saving is not publishing


def test_a_change_through_the_service_starts_from_the_latest_version(rolled_back, alice):  # type: ignore[no-untyped-def]
    v3 = agent_update(agent=rolled_back, changes={"temperature": 0.2}, author=alice)
    assert v3.number == 3
    assert v3.config["system_prompt"] == "Be thorough." and v3.config["temperature"] == 0.2


def test_a_form_opened_on_an_older_version_is_refused(rolled_back, alice):  # type: ignore[no-untyped-def]
    agent_update(agent=rolled_back, changes={"temperature": 0.2}, author=alice)  # v3, elsewhere
    client = Client()
    client.force_login(alice)
    data = form_data(rolled_back, system_prompt="Be thorough.")
    response = client.post("/agents/support/", {**data, "based_on": "2", "save": "1"})
    assert response.status_code == 400
    assert "v3 was saved since you opened v2" in response.content.decode()
    assert 'name="based_on" value="2"' in response.content.decode()
    assert not AgentVersion.objects.filter(agent=rolled_back, number=4).exists()
    with pytest.raises(ValidationError):
        agent_update(agent=rolled_back, changes={}, author=alice, based_on=2)
