"""Retention of the runtime's checkpoint records, run by tracing's retention job.

Tool-call rows (the idempotency records) of runs that finished before the cutoff are
deleted in batches; the conversation itself (messages) is kept.
"""

from __future__ import annotations

from agentops.models import Agent
from tracing.retention import RetentionPolicy, delete_in_batches


def toolcalls_purge(policy: RetentionPolicy) -> int:
    deleted = 0
    for agent in Agent.objects.only("pk", "slug"):
        deleted += delete_in_batches(
            table="agentops_toolcall",
            where="run_id IN (SELECT id FROM agentops_run WHERE agent_id = %s AND finished_at < %s)",
            params=[agent.pk, policy.cutoff_for(agent.slug)],
            batch_size=policy.batch_size,
        )
    return deleted
