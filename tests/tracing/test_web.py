"""The web helpers every app's views share (tracing/platform/web.py): one safe-redirect rule, one
htmx form-error status, one pager."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse

from agentops.models import Run, RunStatus
from tests.factories import SessionFactory, ToolFactory
from tracing.platform.web import error_status, id_param, next_url, page_query

OFF_SITE = [
    "https://evil.example/",
    "//evil.example/runs/",
    "/\\evil.example/",
    "http:evil.example",
    "javascript:alert(1)",
    "https://127.0.0.1.evil.example/",
]


@pytest.mark.parametrize("target", OFF_SITE)
def test_it_refuses_an_off_site_next(target):
    request = RequestFactory().post("/x", {"next": target}, HTTP_HOST="127.0.0.1")
    assert next_url(request, fallback="/home/") == "/home/"


def test_it_follows_a_next_on_this_site():
    request = RequestFactory().post("/x", {"next": "/console/?q=a"}, HTTP_HOST="127.0.0.1")
    assert next_url(request, fallback="/home/") == "/console/?q=a"
    absolute = RequestFactory().post(
        "/x", {"next": "http://127.0.0.1/runs/"}, HTTP_HOST="127.0.0.1"
    )
    assert next_url(absolute, fallback="/home/") == "http://127.0.0.1/runs/"
    secure = RequestFactory().post(
        "/x", {"next": "http://127.0.0.1/runs/"}, HTTP_HOST="127.0.0.1", secure=True
    )
    assert next_url(secure, fallback="/home/") == "/home/"  # no downgrade to http


def test_it_answers_htmx_form_errors_with_200_and_pages_with_the_status():
    page = RequestFactory().get("/x")
    partial = RequestFactory().get("/x")
    partial.htmx = True  # type: ignore[attr-defined]
    assert error_status(page) == 400 and error_status(page, 503) == 503
    assert error_status(partial) == 200 and error_status(partial, 503) == 200


def test_it_keeps_the_filters_but_not_the_page_in_the_pager_links():
    request = RequestFactory().get("/x", {"agent": "a b", "page": "3", "status": "failed"})
    assert page_query(request) == "agent=a+b&status=failed"


@pytest.mark.django_db
def test_it_refuses_an_off_site_next_on_every_form_that_takes_one(alice):
    session = SessionFactory()
    tool = ToolFactory(name="pager_tool")
    failed = Run.objects.create(session=session, agent=session.agent, status=RunStatus.FAILED)
    running = Run.objects.create(session=session, agent=session.agent, status=RunStatus.RUNNING)
    client = Client()
    client.force_login(alice)
    forms = [
        (reverse("observe:run_retry", args=[failed.pk]), reverse("observe:run", args=[failed.pk])),
        (
            reverse("observe:run_cancel", args=[running.pk]),
            reverse("observe:run", args=[running.pk]),
        ),
        (reverse("tools:toggle", args=[tool.pk]), reverse("tools:detail", args=[tool.pk])),
    ]
    for url, fallback in forms:
        for target in OFF_SITE:
            response = client.post(url, {"next": target, "enabled": "0"})
            assert response.status_code == 302 and response["Location"] == fallback, (url, target)
    # One rule for every form: an on-site `next` is followed, wherever it points.
    toggle = client.post(
        reverse("tools:toggle", args=[tool.pk]), {"next": "/runs/", "enabled": "0"}
    )
    assert toggle["Location"] == "/runs/"


@pytest.mark.django_db
def test_it_renders_one_pager_on_every_paged_list(alice):
    from agentops.events import audit_record

    session = SessionFactory()
    for _ in range(51):
        Run.objects.create(session=session, agent=session.agent)
    for i in range(101):
        audit_record(actor=alice, action="run.cancel", target=str(i))
    client = Client()
    client.force_login(alice)
    runs = client.get(reverse("observe:runs"), {"agent": session.agent.slug}).content.decode()
    assert "page 1 of 2 · 51 runs" in runs
    assert f'href="?agent={session.agent.slug}&amp;page=2">older →</a>' in runs
    audit = client.get(reverse("operators:audit"), {"page": "2"}).content.decode()
    assert "page 2 of 2</span>" in audit and 'href="?page=1">← newer</a>' in audit


def test_it_reads_an_id_only_as_a_whole_number_a_postgres_integer_holds():
    assert [id_param(v) for v in ("1", " 42 ", "2147483647")] == [1, 42, 2147483647]
    for bad in ("", "0", "-1", "1.5", "²", "\u0661", "2147483648", "99999999999", "0x1f", "1e3"):
        assert id_param(bad) is None, bad
