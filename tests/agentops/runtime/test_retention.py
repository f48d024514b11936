from datetime import timedelta

from django.utils import timezone

from agentops.models import Run, ToolCall
from tests.factories import SessionFactory
from tracing.retention import retention_policy


def test_it_purges_tool_calls_of_old_finished_runs_only(db):
    from agentops.runtime.retention import toolcalls_purge

    session = SessionFactory()
    old = Run.objects.create(
        session=session,
        agent=session.agent,
        status="succeeded",
        finished_at=timezone.now() - timedelta(days=400),
    )
    recent = Run.objects.create(
        session=session, agent=session.agent, status="succeeded", finished_at=timezone.now()
    )
    for run in (old, recent):
        ToolCall.objects.create(run=run, step=1, call_id="c1", tool_name="echo", status="succeeded")
    assert toolcalls_purge(retention_policy()) == 1
    assert list(ToolCall.objects.values_list("run_id", flat=True)) == [recent.pk]
