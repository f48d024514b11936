"""django-rq's dashboard under /admin/django-rq/: a queue, job or worker that does not exist is
Django's 404 page (nothing of the URL echoed back), other failures stay server errors."""

import pytest
from django.test import RequestFactory
from django.urls import resolve

from agentops.middleware import RqDashboardNotFoundMiddleware

pytestmark = pytest.mark.django_db

INJECTED = "<img src=x onerror=alert(1)>"


@pytest.mark.parametrize(
    "url",
    [
        f"/admin/django-rq/queues/0/{INJECTED}/delete/",
        f"/admin/django-rq/queues/0/{INJECTED}/",
        "/admin/django-rq/queues/0/no-such-job/delete/",
        "/admin/django-rq/queues/0/no-such-job/requeue/",
        "/admin/django-rq/queues/99/",
        "/admin/django-rq/workers/0/rq:worker:nobody/",
        f"/admin/django-rq/workers/0/{INJECTED}/",
    ],
)
def test_a_missing_queue_job_or_worker_is_a_404_that_echoes_nothing(admin_client, url):
    response = admin_client.get(url)
    assert response.status_code == 404
    body = response.content.decode()
    assert "<img" not in body and "no-such-job" not in body and "nobody" not in body


def test_someone_not_staff_is_sent_to_the_login_not_told_what_exists(client):
    response = client.get("/admin/django-rq/queues/99/")
    assert response.status_code == 302 and "login" in response["Location"]


@pytest.mark.parametrize("error", [ValueError("boom"), AssertionError(), IndexError()])
def test_other_exceptions_of_its_views_stay_server_errors(admin_client, alice, error):
    request = RequestFactory().get("/admin/django-rq/queues/0/")
    request.user = alice
    request.resolver_match = resolve("/admin/django-rq/queues/0/")
    middleware = RqDashboardNotFoundMiddleware(lambda r: None)  # type: ignore[arg-type,return-value]
    assert middleware.process_exception(request, error) is None
