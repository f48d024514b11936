import pytest
from django.contrib import admin

from agentops.models import AuditEntry, Message, Run, RunStatus, ToolCall, ToolCallStatus
from tests.factories import SessionFactory

pytestmark = pytest.mark.django_db

HISTORY = ["run", "message", "toolcall", "auditentry"]


@pytest.mark.parametrize("model", HISTORY)
def test_it_offers_no_add_for_history(admin_client, model):
    page = admin_client.get(f"/admin/agentops/{model}/")
    assert page.status_code == 200
    assert f"/admin/agentops/{model}/add/" not in page.content.decode()
    assert admin_client.get(f"/admin/agentops/{model}/add/").status_code == 403


def test_it_shows_history_read_only(admin_client):
    session = SessionFactory()
    run = Run.objects.create(session=session, agent=session.agent, status=RunStatus.FAILED)
    message = Message.objects.create(session=session, seq=1, role="user", content="hi", run=run)
    call = ToolCall.objects.create(
        run=run, step=1, call_id="c1", tool_name="echo", status=ToolCallStatus.SUCCEEDED
    )
    entry = AuditEntry.objects.create(action="claim", session=session)
    for model, obj in [("run", run), ("message", message), ("toolcall", call)]:
        url = f"/admin/agentops/{model}/{obj.pk}/change/"
        page = admin_client.get(url)
        assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
        assert admin_client.post(url, {"status": "succeeded"}).status_code == 403
    page = admin_client.get(f"/admin/agentops/auditentry/{entry.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert admin_client.get(f"/admin/agentops/auditentry/{entry.pk}/delete/").status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED


def test_it_names_every_admin_model_in_proper_english_plural():
    for model in admin.site._registry:
        singular = str(model._meta.verbose_name)
        plural = str(model._meta.verbose_name_plural)
        if singular.endswith("y") and singular[-2:-1] not in "aeiou":
            assert plural == singular[:-1] + "ies", f"{model.__name__}: {plural!r}"
