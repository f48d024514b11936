"""The one enqueue-on-commit: a job is sent once the caller commits; Redis being away is
logged, not raised (Postgres holds the work and a sweep sends it again); any other failure
is a bug, and is raised."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import django_rq
import pytest
from django.db import transaction
from django.utils import timezone

from agentops.testing.processes import free_port
from memory.models import Memory
from memory.services import memories_embed_missing, memory_create
from tests.factories import AgentFactory
from tracing.platform.enqueue import queue_job_on_commit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_away(settings):
    """A queue whose Redis refuses every connection: nothing listens on its port."""
    settings.RQ_QUEUES = {
        **settings.RQ_QUEUES,
        "away": {"URL": f"redis://127.0.0.1:{free_port()}/0", "DEFAULT_TIMEOUT": 60},
    }
    return "away"


def test_it_sends_the_job_only_once_the_transaction_commits(settings):
    queue = django_rq.get_queue(settings.MAINTENANCE_QUEUE)
    with transaction.atomic():
        queue_job_on_commit(
            queue=settings.MAINTENANCE_QUEUE,
            func="memory.jobs.memory_embed_job",
            args=([],),
            job_id="enqueue-owner-commit",
            sweep="none",
        )
        assert queue.fetch_job("enqueue-owner-commit") is None
    assert queue.fetch_job("enqueue-owner-commit") is not None
    with transaction.atomic():
        queue_job_on_commit(
            queue=settings.MAINTENANCE_QUEUE,
            func="memory.jobs.memory_embed_job",
            args=([],),
            job_id="enqueue-owner-rollback",
            sweep="none",
        )
        transaction.set_rollback(True)
    assert queue.fetch_job("enqueue-owner-rollback") is None


def test_it_logs_a_redis_outage_and_names_the_sweep(redis_away, caplog):
    with caplog.at_level(logging.WARNING), transaction.atomic():
        queue_job_on_commit(
            queue=redis_away,
            func="agentops.webhooks.jobs.webhook_deliver_job",
            each=[(1,), (2,)],
            sweep="webhooks_dispatch_due",
        )
    assert "job.enqueue_deferred" in caplog.text
    assert "webhooks_dispatch_due" in caplog.text


def test_it_raises_what_is_not_a_redis_outage(settings):
    # The memory app's copy caught every Exception: a job that could never be sent was
    # logged as if Redis were away, and nothing would ever send it.
    with pytest.raises(TypeError, match="pickle"), transaction.atomic():
        queue_job_on_commit(
            queue=settings.MAINTENANCE_QUEUE,
            func="memory.jobs.memory_embed_job",
            args=(threading.Lock(),),
            sweep="none",
        )


def test_it_saves_a_memory_written_while_redis_is_away(redis_away, settings, caplog):
    agent = AgentFactory()
    settings.MAINTENANCE_QUEUE = redis_away
    with caplog.at_level(logging.WARNING):
        memory = memory_create(agent_id=agent.pk, user_key="u", text="likes tea", actor=None)
    assert Memory.objects.get(pk=memory.pk).embedding is None
    assert "memories_embed_missing" in caplog.text
    # The scheduler's sweep embeds it once it is a minute old (the memory app had no sweep:
    # a memory saved while Redis was away stayed out of recall until someone ran a command).
    assert memories_embed_missing() == 0
    assert memories_embed_missing(now=timezone.now() + timedelta(minutes=2)) == 1
    assert Memory.objects.get(pk=memory.pk).embedding is not None


def test_it_keeps_one_queue_per_process_and_follows_its_settings(settings, caplog):
    # One Redis client per queue, not a new connection per job; a queue whose settings
    # change (here: its Redis goes elsewhere) is built again from them.
    from tracing.platform.enqueue import _queue

    name = settings.MAINTENANCE_QUEUE
    assert _queue(name) is _queue(name)
    settings.RQ_QUEUES = {
        **settings.RQ_QUEUES,
        name: {"URL": f"redis://127.0.0.1:{free_port()}/0", "DEFAULT_TIMEOUT": 60},
    }
    with caplog.at_level(logging.WARNING), transaction.atomic():
        queue_job_on_commit(
            queue=name, func="memory.jobs.memory_embed_job", args=([],), sweep="none"
        )
    assert "job.enqueue_deferred" in caplog.text
