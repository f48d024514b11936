import uuid

import pytest
from django.utils import timezone

from tracing.models import Span

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("model", ["span", "alertevent"])
def test_it_offers_no_add_or_change_for_trace_history(admin_client, model):
    page = admin_client.get(f"/admin/tracing/{model}/")
    assert page.status_code == 200
    assert f"/admin/tracing/{model}/add/" not in page.content.decode()
    assert admin_client.get(f"/admin/tracing/{model}/add/").status_code == 403


def test_it_shows_a_span_read_only(admin_client):
    now = timezone.now()
    span = Span.objects.create(
        trace_id=uuid.uuid4(), seq=1, span_id="a" * 16, name="step", start_time=now, end_time=now
    )
    url = f"/admin/tracing/span/{span.pk}/change/"
    page = admin_client.get(url)
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert admin_client.post(url, {"name": "changed"}).status_code == 403
    span.refresh_from_db()
    assert span.name == "step"
