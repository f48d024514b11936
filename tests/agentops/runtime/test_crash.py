"""Crash recovery with real worker processes killed with SIGKILL at different steps."""

import pytest

from agentops.testing.chaos import chaos_run
from agentops.testing.processes import child_env
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chaos_agent(dev_agent):
    dev_agent.tools.add(*python_tools_sync())
    dev_agent.max_steps = 10
    dev_agent.save()
    return dev_agent


def test_it_survives_twenty_kills_without_losing_or_repeating_work(chaos_agent):
    env = child_env(RUN_STALE_SECONDS="4", RUN_LOST_JOB_SECONDS="5")
    report = chaos_run(agent=chaos_agent, env=env, kills=21, workers=3, steps=4, timeout=300)
    figures = report.figures()
    print(figures)
    assert figures["kills"] >= 20
    assert set(report.kills) == {"horse", "parent", "group"}
    assert figures["problems"] == []
    assert figures["non_idempotent_executed_twice"] == 0
    assert figures["completed_calls_executed_again"] == 0
    assert figures["recoveries_measured"] > 0
    assert set(figures["runs"]) <= {"succeeded", "handed_off"}
    assert set(figures["handoff_reasons"]) <= {"tool outcome unknown"}
