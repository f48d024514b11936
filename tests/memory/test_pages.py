import uuid

import django_rq
import pytest
from django.urls import reverse

from memory.models import Memory, MemoryAction, MemoryEvent, MemoryRecall, MemoryRevision
from memory.services import memory_remember
from tests.factories import UserFactory

SCRIPT = '<script>alert("x")</script> likes <b>bold</b> tea'


@pytest.fixture
def tea(agent):
    return memory_remember(
        agent_id=agent.pk,
        user_key="ana",
        text="The customer drinks green tea.",
        source_run_id=uuid.uuid4(),
        source_step=2,
    )


def test_it_sends_anonymous_visitors_to_login(client, agent, tea):
    for url in (
        reverse("memory:index"),
        reverse("memory:agent", args=[agent.slug]),
        reverse("memory:detail", args=[tea.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("login"))


def test_it_refuses_a_user_without_a_role(client, agent, tea):
    client.force_login(UserFactory(username="dave"))
    assert client.get(reverse("memory:index")).status_code == 403
    assert client.get(reverse("memory:detail", args=[tea.pk])).status_code == 403


def test_it_lets_a_viewer_read_but_not_change(client, charlie, agent, tea):
    client.force_login(charlie)
    index = client.get(reverse("memory:index"))
    assert index.status_code == 200 and agent.slug in index.content.decode()
    page = client.get(reverse("memory:agent", args=[agent.slug]))
    assert page.status_code == 200 and "The customer drinks green tea." in page.content.decode()
    detail = client.get(reverse("memory:detail", args=[tea.pk]))
    assert detail.status_code == 200 and 'id="memory-edit"' not in detail.content.decode()
    assert client.get(reverse("memory:history", args=[agent.slug])).status_code == 200
    for name, data in (
        ("memory:edit", {"text": "changed", "importance": "0.5"}),
        ("memory:pin", {"pinned": "1"}),
        ("memory:delete", {}),
    ):
        assert client.post(reverse(name, args=[tea.pk]), data).status_code == 403
    assert (
        client.post(
            reverse("memory:create", args=[agent.slug]),
            {"text": "new", "kind": "fact", "importance": "0.5"},
        ).status_code
        == 403
    )
    tea.refresh_from_db()
    assert tea.text == "The customer drinks green tea." and not tea.pinned
    assert Memory.objects.count() == 1


def test_it_shows_model_written_text_as_text(client, charlie, agent):
    memory = memory_remember(agent_id=agent.pk, user_key="<img src=x>", text=SCRIPT)
    client.force_login(charlie)
    for url in (
        reverse("memory:agent", args=[agent.slug]),
        reverse("memory:detail", args=[memory.pk]),
        reverse("memory:history", args=[agent.slug]),
    ):
        body = client.get(url).content.decode()
        assert (
            "<script>alert" not in body and "<b>bold</b>" not in body and "<img src=x>" not in body
        )
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body


def test_it_links_the_run_that_wrote_and_the_runs_that_recalled(client, charlie, agent, tea):
    run = uuid.uuid4()
    MemoryRecall.objects.create(memory=tea, run_id=run, score=0.7)
    client.force_login(charlie)
    body = client.get(reverse("memory:detail", args=[tea.pk])).content.decode()
    assert f'href="/runs/{tea.source_run_id}/"' in body and "step 2" in body
    assert f'href="/runs/{run}/"' in body


def test_it_searches_by_meaning_with_htmx_and_filters(client, charlie, agent, tea):
    memory_remember(agent_id=agent.pk, user_key="ben", text="Ben drinks black coffee.")
    memory_remember(agent_id=agent.pk, user_key="", text="The shop closes at 7 pm.", kind="episode")
    client.force_login(charlie)
    url = reverse("memory:agent", args=[agent.slug])
    partial = client.get(
        url, {"q": "which hot drink", "scope": "user", "user": "ana"}, HTTP_HX_REQUEST="true"
    )
    body = partial.content.decode()
    assert partial.status_code == 200 and "<html" not in body and 'id="memory-results"' in body
    assert "green tea" in body and "coffee" not in body and "Similarity" in body
    everyone = client.get(url, {"q": "which hot drink"}, HTTP_HX_REQUEST="true").content.decode()
    assert "green tea" in everyone and "coffee" in everyone
    episodes = client.get(url, {"kind": "episode"}).content.decode()
    assert "The shop closes" in episodes and "green tea" not in episodes
    agent_wide = client.get(url, {"scope": "agent"}).content.decode()
    assert "The shop closes" in agent_wide and "coffee" not in agent_wide


def test_it_explains_a_bad_filter(client, charlie, agent, tea):
    client.force_login(charlie)
    url = reverse("memory:agent", args=[agent.slug])
    response = client.get(url, {"scope": "user", "user": ""})
    assert response.status_code == 400 and "Name the user" in response.content.decode()
    htmx = client.get(url, {"q": "x" * 600}, HTTP_HX_REQUEST="true")
    assert htmx.status_code == 200 and "at most 500 characters" in htmx.content.decode()


def test_it_lets_an_operator_edit_keeping_the_previous_text(
    client, bob, agent, tea, django_capture_on_commit_callbacks
):
    client.force_login(bob)
    queue = django_rq.get_queue("maintenance")
    before = set(queue.job_ids)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("memory:edit", args=[tea.pk]),
            {"text": "The customer drinks jasmine tea.", "importance": "0.9"},
        )
    assert response.status_code == 302
    tea.refresh_from_db()
    assert (
        tea.text == "The customer drinks jasmine tea."
        and tea.importance == 0.9
        and tea.edited_by == bob
    )
    assert list(MemoryRevision.objects.values_list("text", flat=True)) == [
        "The customer drinks green tea."
    ]
    new_jobs = [queue.fetch_job(j) for j in set(queue.job_ids) - before]
    assert [(j.func_name, j.args) for j in new_jobs] == [
        ("memory.jobs.memory_embed_job", ([tea.pk],))
    ]
    for job in new_jobs:
        job.delete()
    body = client.get(reverse("memory:detail", args=[tea.pk])).content.decode()
    assert "The customer drinks green tea." in body and "waiting to be embedded" in body


def test_it_keeps_the_text_when_an_edit_is_invalid(client, bob, agent, tea):
    client.force_login(bob)
    response = client.post(reverse("memory:edit", args=[tea.pk]), {"text": "", "importance": "2"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "This field is required." in body and "less than or equal to 1" in body
    tea.refresh_from_db()
    assert tea.text == "The customer drinks green tea." and not MemoryRevision.objects.exists()


def test_it_lets_an_operator_pin_unpin_and_delete(client, bob, agent, tea):
    client.force_login(bob)
    client.post(reverse("memory:pin", args=[tea.pk]), {"pinned": "1"})
    tea.refresh_from_db()
    assert tea.pinned
    client.post(reverse("memory:pin", args=[tea.pk]), {"pinned": "0"})
    tea.refresh_from_db()
    assert not tea.pinned and tea.metadata["auto_pin_blocked"] is True
    response = client.post(reverse("memory:delete", args=[tea.pk]))
    assert response.status_code == 302 and response.url == reverse(
        "memory:agent", args=[agent.slug]
    )
    assert not Memory.objects.filter(pk=tea.pk).exists()
    actions = list(
        MemoryEvent.objects.filter(memory_ref=tea.pk)
        .order_by("id")
        .values_list("action", "actor_label")
    )
    assert actions == [
        ("created", f"run {tea.source_run_id}"),
        ("pinned", "bob"),
        ("unpinned", "bob"),
        ("deleted", "bob"),
    ]
    history = client.get(reverse("memory:history", args=[agent.slug])).content.decode()
    assert "The customer drinks green tea." in history and "(gone)" in history
    assert client.get(reverse("memory:detail", args=[tea.pk])).status_code == 404


def test_it_lets_an_operator_add_a_memory(client, bob, agent):
    client.force_login(bob)
    url = reverse("memory:create", args=[agent.slug])
    response = client.post(
        url,
        {
            "text": "Deliveries go to the back door.",
            "kind": "preference",
            "user_key": "ana",
            "importance": "0.6",
        },
    )
    memory = Memory.objects.get(agent_id=agent.pk)
    assert response.status_code == 302 and response.url == reverse(
        "memory:detail", args=[memory.pk]
    )
    assert (memory.kind, memory.user_key, memory.edited_by, memory.embedding) == (
        "preference",
        "ana",
        bob,
        None,
    )
    assert MemoryEvent.objects.get(memory=memory).action == MemoryAction.CREATED
    duplicate = client.post(
        url,
        {
            "text": "deliveries go to the back door",
            "kind": "fact",
            "user_key": "ana",
            "importance": "0.5",
        },
    )
    assert duplicate.status_code == 400 and "already says this" in duplicate.content.decode()
    assert Memory.objects.filter(agent_id=agent.pk).count() == 1
