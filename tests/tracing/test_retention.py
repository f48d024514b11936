"""Old spans and rollups go in small batches; per-agent overrides; other apps' hooks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from tests.tracing.helpers import TraceBuilder
from tracing import retention
from tracing.models import MetricRollup, RetentionOverride, Span
from tracing.retention import retention_hook_register, retention_purge


def spans_aged(days: float, agent: str, count: int = 2) -> list[Span]:
    builder = TraceBuilder(timezone.now() - timedelta(days=days), agent)
    for i in range(count):
        builder.add("tool.call", at_ms=i, duration_ms=1)
    return builder.save()


@pytest.fixture(autouse=True)
def no_hooks():
    saved = dict(retention._retention_hooks)
    retention._retention_hooks.clear()
    yield
    retention._retention_hooks.clear()
    retention._retention_hooks.update(saved)


def test_it_deletes_spans_past_retention_in_batches_with_per_agent_overrides(db, settings):
    settings.TRACE_RETENTION_DAYS = 30
    settings.RETENTION_BATCH_SIZE = 3
    RetentionOverride.objects.create(agent="keeper", days=90)
    RetentionOverride.objects.create(agent="brief", days=1)
    old = spans_aged(31, "plain", 7)  # more than two batches
    young = spans_aged(29, "plain")
    kept_long = spans_aged(40, "keeper")
    too_old_even_for_keeper = spans_aged(91, "keeper")
    brief_old = spans_aged(2, "brief")
    brief_new = spans_aged(0.5, "brief")
    result = retention_purge()
    assert result["spans"] == len(old) + len(too_old_even_for_keeper) + len(brief_old)
    left = set(Span.objects.values_list("pk", flat=True))
    assert left == {s.pk for s in young + kept_long + brief_new}


def test_it_deletes_rollups_past_their_own_retention(db, settings):
    settings.METRICS_MINUTE_RETENTION_DAYS = 3
    settings.METRICS_RETENTION_DAYS = 400
    now = timezone.now()
    old_minute = MetricRollup.objects.create(
        bucket_seconds=60, start=now - timedelta(days=4), kind="run"
    )
    new_minute = MetricRollup.objects.create(
        bucket_seconds=60, start=now - timedelta(days=1), kind="run"
    )
    old_hour = MetricRollup.objects.create(
        bucket_seconds=3600, start=now - timedelta(days=401), kind="run"
    )
    hour = MetricRollup.objects.create(
        bucket_seconds=3600, start=now - timedelta(days=4), kind="run"
    )
    all_time = MetricRollup.objects.create(
        bucket_seconds=0, start=datetime(1970, 1, 1, tzinfo=UTC), kind="run"
    )
    assert retention_purge()["rollups"] == 2
    assert set(MetricRollup.objects.values_list("pk", flat=True)) == {
        new_minute.pk,
        hour.pk,
        all_time.pk,
    }
    assert not MetricRollup.objects.filter(pk__in=[old_minute.pk, old_hour.pk]).exists()


def test_it_runs_other_apps_hooks_with_the_cutoffs(db, settings):
    settings.TRACE_RETENTION_DAYS = 10
    RetentionOverride.objects.create(agent="keeper", days=90)
    seen = []

    def toolcalls(policy):
        seen.append(policy)
        return 5

    retention_hook_register(name="tool_calls", hook=toolcalls)
    result = retention_purge()
    assert result["tool_calls"] == 5
    (policy,) = seen
    now = timezone.now()
    assert abs((now - policy.cutoff_for("anyone")) - timedelta(days=10)) < timedelta(seconds=5)
    assert abs((now - policy.cutoff_for("keeper")) - timedelta(days=90)) < timedelta(seconds=5)


def test_it_surfaces_a_failing_hook_after_running_the_others(db):
    ran = []

    def broken(policy):
        raise RuntimeError("disk on fire")

    retention_hook_register(name="broken", hook=broken)
    retention_hook_register(name="fine", hook=lambda policy: ran.append(1) or 0)
    spans_aged(100, "plain")
    with pytest.raises(RuntimeError, match="retention hooks failed: broken"):
        retention_purge()
    assert ran == [1] and not Span.objects.exists()
