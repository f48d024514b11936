"""Forking from the run page (the form posts to /runs/<id>/fork)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from agentops.models import Message, Run, Session
from tests.agentops.runtime.helpers import recorded_run

pytestmark = pytest.mark.django_db


def test_it_offers_a_fork_after_each_step_to_operators_only(client, bob, charlie):
    origin = recorded_run()
    url = reverse("observe:run", args=[origin.pk])
    client.force_login(charlie)
    assert b"data-fork-step" not in client.get(url).content
    client.force_login(bob)
    page = client.get(url).content.decode()
    for step in range(4):
        assert f'id="fork-step-{step}"' in page


def test_it_forks_and_shows_the_new_run(client, bob):
    origin = recorded_run()
    client.force_login(bob)
    response = client.post(
        reverse("observe:run_fork", args=[origin.pk]),
        {"step": "2", "content": "bye", "allow_side_effects": "on"},
        follow=True,
    )
    fork = Run.objects.get(forked_from=origin)
    assert response.redirect_chain[-1][0] == reverse("observe:run", args=[fork.pk])
    page = response.content.decode()
    assert "Forked at step 2" in page and "tool message edited" in page
    # The tool-call table agrees with the conversation: the edited result, marked edited.
    table = page[page.index("<h3>Tool calls</h3>") :]
    assert 'class="badge fork-edited"' in table and "<pre>bye</pre>" in table
    assert "fork-copied" not in table
    assert Message.objects.get(session_id=fork.session_id, step=2).content == "bye"
    assert fork.session.fork_tools == "allow"
    origin_page = client.get(reverse("observe:run", args=[origin.pk])).content.decode()
    assert reverse("observe:run", args=[fork.pk]) in origin_page


def test_it_takes_an_untouched_message_sent_with_crlf_line_breaks_as_no_edit(client, bob):
    origin = recorded_run(question="line one\nline two")
    client.force_login(bob)
    client.post(
        reverse("observe:run_fork", args=[origin.pk]),
        {"step": "0", "content": "line one\r\nline two"},
    )
    fork = Run.objects.get(forked_from=origin)
    assert fork.fork_edit == {}
    assert fork.trigger.content == "line one\nline two"


def test_it_says_why_it_did_not_fork(client, bob, charlie):
    origin = recorded_run()
    url = reverse("observe:run_fork", args=[origin.pk])
    client.force_login(bob)
    response = client.post(url, {"step": "9"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("observe:run", args=[origin.pk])
    assert "Not forked: step: run" in response.content.decode()
    response = client.post(url, {"step": "x"}, follow=True)
    assert "Not forked: step: Enter a whole number." in response.content.decode()
    client.force_login(charlie)
    assert client.post(url, {"step": "1"}).status_code == 403
    assert Session.objects.count() == 1
