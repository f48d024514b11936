"""Crash recovery under fire: kill -9 workers in the middle of runs, restart them, and
check that every run completes or hands off with a reason, that no non-idempotent tool
call ran twice and no completed call ran again, and that nothing stored was lost.

The runs call four tools: an idempotent lookup, a non-idempotent change that honours no
key (in flight at a kill: handed off, "tool outcome unknown"), and two that honour an
idempotency key, an HTTP tool calling a loopback service (KeyedChargeServer) and a Python
tool (in flight at a kill: sent again with the same key, never handed off, never twice).

Used by tests/agentops/runtime/test_crash.py (12 kills) and bench/chaos.py (200 kills).
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import psutil
from django.db import close_old_connections

from agentops.models import FINISHED_RUN_STATUSES, Agent, Message, Role, Run, RunStatus, ToolCall
from agentops.runtime.services import session_create, session_post_message
from agentops.testing.processes import FORKING_WORKER, Proc, start_scheduler, start_worker
from agentops.testing.tools import KeyedChargeServer, keyed_charge_tool, side_effects_log
from tools.models import ToolDefinition
from tracing.models import Span

KILL_MODES = ("horse", "parent", "group")
CHAOS_TOOLS = ("side_effect", "slow_lookup", "keyed_charge", "keyed_side_effect")
UNKNOWN_OUTCOME = "tool outcome unknown"
# A worker that drives its runs in threads has no work horse: a kill takes all its runs down.
THREADED_KILL_MODES = ("parent", "group")


@dataclass
class ChaosReport:
    kills: Counter = field(default_factory=Counter)
    recoveries: list[float] = field(default_factory=list)
    runs: Counter = field(default_factory=Counter)
    handoff_reasons: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    duplicate_side_effects: int = 0
    repeated_completed_calls: int = 0
    # Calls of tools that honour an idempotency key, found in flight after a kill and sent
    # again; and those of tools that honour none, handed off ("tool outcome unknown").
    keyed_calls_resent: int = 0
    keyed_calls_handed_off: int = 0
    unknown_outcomes_handed_off: int = 0
    keyed_effects: int = 0
    keyed_duplicated_effects: int = 0
    seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        rec = sorted(self.recoveries)
        return {
            "kills": sum(self.kills.values()),
            "kills_by_mode": dict(self.kills),
            "runs": dict(self.runs),
            "handoff_reasons": dict(self.handoff_reasons),
            "keyed_calls_resent": self.keyed_calls_resent,
            "keyed_calls_handed_off": self.keyed_calls_handed_off,
            "keyed_effects": self.keyed_effects,
            "keyed_duplicated_effects": self.keyed_duplicated_effects,
            "unknown_outcomes_handed_off": self.unknown_outcomes_handed_off,
            "recoveries_measured": len(rec),
            "recovery_p50_s": round(statistics.median(rec), 2) if rec else None,
            "recovery_p95_s": round(rec[max(0, int(len(rec) * 0.95) - 1)], 2) if rec else None,
            "recovery_max_s": round(rec[-1], 2) if rec else None,
            "non_idempotent_executed_twice": self.duplicate_side_effects,
            "completed_calls_executed_again": self.repeated_completed_calls,
            "problems": self.problems[:20],
            "seconds": round(self.seconds, 1),
        }


def horse_of(worker: Proc) -> psutil.Process | None:
    try:
        children = psutil.Process(worker.pid).children()
    except psutil.NoSuchProcess:
        return None
    return children[0] if children else None


def runner_of(worker: Proc, *, threaded: bool) -> int | None:
    """The pid that drives the worker's runs (written in `Run.worker`), if it drives any."""
    if not threaded:
        horse = horse_of(worker)
        return horse.pid if horse else None
    running = Run.objects.filter(status=RunStatus.RUNNING, worker__endswith=f":{worker.pid}")
    return worker.pid if running.exists() else None


def kill(worker: Proc, mode: str, *, threaded: bool = False) -> int | None:
    """Kill -9 the job's child ('horse'), the parent worker, or both process groups. Returns
    the pid that drove the runs, None when there was nothing to kill."""
    if threaded:
        runner = runner_of(worker, threaded=True)
        if runner is not None:
            (os.killpg if mode == "group" else os.kill)(worker.pid, signal.SIGKILL)
        return runner
    horse = horse_of(worker)
    horse_pid = horse.pid if horse else None
    if mode == "horse":
        if horse_pid is None:
            return None
        os.kill(horse_pid, signal.SIGKILL)
    elif mode == "parent":
        os.kill(worker.pid, signal.SIGKILL)
    else:
        if horse_pid is not None:
            os.killpg(os.getpgid(horse_pid), signal.SIGKILL)
        os.killpg(worker.pid, signal.SIGKILL)
    return horse_pid


def start_runs(agent: Agent, count: int, rng: random.Random, steps: int) -> list[Any]:
    runs = []
    # Every tool in every wave (of four runs or more), in a random order.
    tools = rng.sample(CHAOS_TOOLS, len(CHAOS_TOOLS))
    for index in range(count):
        session = session_create(agent=agent, external_user=f"chaos-{rng.randrange(10**6)}")
        tool = tools[index % len(tools)]
        run = session_post_message(session=session, content=f"chain {steps} {tool} 0.6")
        assert run is not None
        runs.append(run.pk)
    return runs


def chaos_run(
    *,
    agent: Agent,
    env: dict[str, str],
    kills: int,
    workers: int = 3,
    steps: int = 4,
    runs_per_wave: int = 6,
    seed: int = 7,
    timeout: float = 900,
    worker_class: str = FORKING_WORKER,
) -> ChaosReport:
    threaded = worker_class != FORKING_WORKER
    rng = random.Random(seed)
    report = ChaosReport()
    started = time.monotonic()
    log_file = side_effects_log()
    if log_file.exists():
        log_file.unlink()
    charges = KeyedChargeServer()
    agent.tools.add(keyed_charge_tool(charges.url))
    env = {**env, "TOOL_EGRESS_ALLOWLIST": "127.0.0.1/32"}  # the workers reach `charges`
    scheduler = start_scheduler(env)
    pool = [start_worker(env, name=f"chaos{i}", worker_class=worker_class) for i in range(workers)]
    all_runs: list[Any] = start_runs(agent, runs_per_wave, rng, steps)
    pending: dict[Any, tuple[int, float]] = {}  # run id -> (epoch at kill, kill time)
    modes = list(THREADED_KILL_MODES if threaded else KILL_MODES)
    try:
        while sum(report.kills.values()) < kills and time.monotonic() - started < timeout:
            time.sleep(rng.uniform(0.4, 1.2))
            close_old_connections()
            watch_recoveries(pending, report)
            busy = [w for w in pool if w.alive() and runner_of(w, threaded=threaded) is not None]
            if not busy:
                if (
                    Run.objects.filter(pk__in=all_runs)
                    .exclude(status__in=FINISHED_RUN_STATUSES)
                    .count()
                    < 2
                ):
                    all_runs += start_runs(agent, runs_per_wave, rng, steps)
                continue
            victim = rng.choice(busy)
            mode = modes[sum(report.kills.values()) % len(modes)]
            horse_pid = kill(victim, mode, threaded=threaded)
            if horse_pid is None:
                continue
            report.kills[mode] += 1
            killed_at = time.monotonic()
            if mode != "parent" or threaded:
                for run in Run.objects.filter(
                    status=RunStatus.RUNNING, worker__endswith=f":{horse_pid}"
                ):
                    pending[run.pk] = (run.epoch, killed_at)
            victim.stop(timeout=2)
            pool.remove(victim)
            pool.append(start_worker(env, name="chaos", worker_class=worker_class))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            close_old_connections()
            watch_recoveries(pending, report)
            if (
                not Run.objects.filter(pk__in=all_runs)
                .exclude(status__in=FINISHED_RUN_STATUSES)
                .exists()
            ):
                break
            time.sleep(0.2)
    finally:
        for proc in [*pool, scheduler]:
            proc.stop(timeout=5)
            if proc.alive():
                proc.kill_group()
        charges.stop()
    report.seconds = time.monotonic() - started
    verify(all_runs, report, charges=charges)
    return report


def watch_recoveries(pending: dict[Any, tuple[int, float]], report: ChaosReport) -> None:
    if not pending:
        return
    for run in Run.objects.filter(pk__in=list(pending)).only("pk", "epoch", "status"):
        epoch, killed_at = pending[run.pk]
        if run.epoch > epoch or run.status in FINISHED_RUN_STATUSES:
            report.recoveries.append(time.monotonic() - killed_at)
            del pending[run.pk]


def verify(
    run_ids: list[Any], report: ChaosReport, *, charges: KeyedChargeServer | None = None
) -> None:
    runs = list(Run.objects.filter(pk__in=run_ids).select_related("session"))
    keyed_tools = set(
        ToolDefinition.objects.filter(honours_idempotency_key=True).values_list("name", flat=True)
    )
    for run in runs:
        report.runs[run.status] += 1
        if run.status == RunStatus.HANDED_OFF:
            report.handoff_reasons[run.wait_reason.split(":")[0]] += 1
            if not run.wait_reason:
                report.problems.append(f"run {run.pk} handed off without a reason")
            if run.wait_reason.startswith(UNKNOWN_OUTCOME):
                tool = run.wait_reason.removeprefix(f"{UNKNOWN_OUTCOME}: ").split(" ")[0]
                if tool in keyed_tools:
                    report.keyed_calls_handed_off += 1
                    report.problems.append(f"run {run.pk} handed off a keyed call: {tool}")
                else:
                    report.unknown_outcomes_handed_off += 1
        elif run.status != RunStatus.SUCCEEDED:
            report.problems.append(
                f"run {run.pk} ended {run.status}: {run.error_class} {run.error_message[:200]}"
            )
    executions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    if side_effects_log().exists():
        for line in side_effects_log().read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                executions[entry["key"]].append(entry)
    finished = {
        c.idempotency_key: c
        for c in ToolCall.objects.filter(run_id__in=run_ids, status="succeeded")
    }
    for key, entries in executions.items():
        if not entries[0]["idempotent"] and len(entries) > 1:
            report.duplicate_side_effects += 1
            report.problems.append(f"non-idempotent call {key} ran {len(entries)} times")
        call = finished.get(key)
        if call is not None and call.finished_at is not None:
            done = call.finished_at.timestamp()
            if any(e["t"] > done for e in entries):
                report.repeated_completed_calls += 1
                report.problems.append(f"completed call {key} ran again after it was recorded")
    for run in runs:
        messages = list(Message.objects.filter(session_id=run.session_id).order_by("seq"))
        seqs = [m.seq for m in messages]
        if seqs != list(range(1, len(seqs) + 1)):
            report.problems.append(f"session {run.session_id} has gaps in its messages: {seqs}")
        answered = {m.tool_call_id for m in messages if m.role == Role.TOOL}
        for message in messages:
            for call in message.tool_calls or []:
                if call["id"] not in answered and run.status in FINISHED_RUN_STATUSES:
                    report.problems.append(
                        f"tool call {call['id']} of session {run.session_id} has no result"
                    )
    verify_keyed(run_ids, keyed_tools, report, charges)


def verify_keyed(
    run_ids: list[Any],
    keyed_tools: set[str],
    report: ChaosReport,
    charges: KeyedChargeServer | None,
) -> None:
    """Each call of a tool that honours an idempotency key made its change at most once, under
    its own key (run, step, call id): a key that changed between attempts would show as a
    second change, or a change under a key no call has."""
    report.keyed_calls_resent = Span.objects.filter(
        trace_id__in=run_ids, name="tool.resend"
    ).count()
    calls = ToolCall.objects.filter(run_id__in=run_ids, tool_name__in=keyed_tools)
    keys = {call.idempotency_key for call in calls}
    runs = {str(run_id) for run_id in run_ids}
    effects: Counter[str] = Counter()
    if charges is not None:
        effects.update(charge.key for charge in charges.charges.values())
    if side_effects_log().exists():
        for line in side_effects_log().read_text().splitlines():
            entry = json.loads(line) if line.strip() else {}
            if entry.get("keyed"):
                effects[entry["key"]] += 1
    for key, count in effects.items():
        if key.split(":")[0] not in runs:
            continue  # a run of another test
        report.keyed_effects += 1
        if count > 1 or key not in keys:
            report.keyed_duplicated_effects += count if key not in keys else count - 1
            report.problems.append(f"keyed call {key} made {count} changes")
