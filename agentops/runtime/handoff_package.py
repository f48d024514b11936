"""The context package of a handoff: a summary for the operator and a suggested reply.

Both take model calls, and a slow model must not keep the human out: the handoff reaches the
queue at once (with the last tool calls, read from the database), and this job, enqueued
when the handoff commits, writes the rest. Until then `Handoff.summary` is empty and the
pages say the package is being written. The job has its own time limit; whatever happens,
it leaves a summary (the model's, or a note saying why there is none) and tells the pages.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.timeouts import JobTimeoutException

from agentops.agent_config import AgentConfig, agent_config_for
from agentops.models import Handoff, Message, Run
from agentops.runtime.context import to_openai
from agentops.runtime.model_client import model_call_guarded
from agentops.runtime.retry import RetryPolicy
from tracing.emit import Tracer
from tracing.platform.enqueue import queue_job_on_commit
from tracing.platform.failures import Failure, FailureClass
from tracing.platform.live import OPS_GROUP, broadcast
from tracing.platform.logs import get_logger

log = get_logger(__name__)

PACKAGE_SECONDS = 60  # the package's own time limit; the RQ job gets a little more
HANDOFF_SUMMARY_PROMPT = (
    "Summarize this conversation for the human operator who takes it over, in 3 sentences."
)
SUGGEST_REPLY_PROMPT = (
    "Draft a short, friendly reply the human operator could send to the user next."
)


def handoff_package_enqueue(*, handoff_id: int) -> None:
    """Queue the package job once the handoff is committed. If Redis is away, the handoff is
    still committed and in the queue; only its summary waits for the sweep."""
    queue_job_on_commit(
        queue=settings.RUN_QUEUE,
        func="agentops.jobs.handoff_package_job",
        args=(handoff_id,),
        job_id=handoff_package_job_id(handoff_id),
        job_timeout=PACKAGE_SECONDS + 30,
        sweep="handoff_packages_reconcile",
    )


def handoff_packages_reconcile(*, older_than: timedelta, now: datetime | None = None) -> int:
    """Queue again the package jobs Redis never got or lost (it was away when the handoff
    committed, or came back without them). A job on its way (waiting, running) is left alone.
    A job under the handoff's job id that is not its own — enqueued before the handoff was
    made (the database was created or restored again while Redis kept its data), or finished
    without writing it — would otherwise stand in for it for ever: it is replaced. A failed
    one (its worker was killed) stays in RQ's failed registry, and the handoff gets a note as
    its summary so that no page says the package is still being written."""
    queue = django_rq.get_queue(settings.RUN_QUEUE)
    now = now or timezone.now()
    missing = Handoff.objects.filter(summary="", created_at__lt=now - older_than)
    sent = 0
    for handoff_id, session_id, created_at in missing.values_list("pk", "session_id", "created_at"):
        try:
            job: Job | None = Job.fetch(
                handoff_package_job_id(handoff_id), connection=queue.connection
            )
        except NoSuchJobError:
            job = None
        status = None
        if job is not None and job.enqueued_at is not None and job.enqueued_at >= created_at:
            status = job.get_status(refresh=False)
        if status in PACKAGE_ON_ITS_WAY:
            continue
        if not Handoff.objects.filter(pk=handoff_id, summary="").exists():
            continue  # written while we looked
        if status in (JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED):
            log.warning("handoff.package_job_failed", handoff_id=handoff_id, status=str(status))
            _package_save(
                handoff_id=handoff_id,
                session_id=session_id,
                summary="(No summary: the job writing it failed.)",
                suggested_reply="",
            )
            continue
        log.warning("handoff.package_requeued", handoff_id=handoff_id, stale_job=job is not None)
        with transaction.atomic():
            handoff_package_enqueue(handoff_id=handoff_id)
        sent += 1
    return sent


PACKAGE_ON_ITS_WAY = (
    JobStatus.CREATED,
    JobStatus.QUEUED,
    JobStatus.STARTED,
    JobStatus.DEFERRED,
    JobStatus.SCHEDULED,
)


def handoff_package_job_id(handoff_id: int) -> str:
    return f"handoff-package-{handoff_id}"


def handoff_package_write(*, handoff_id: int) -> Handoff:
    """Ask the run's models for the summary and the suggested reply, store them, tell the pages."""
    handoff = Handoff.objects.select_related("session").get(pk=handoff_id)
    run = (
        Run.objects.select_related("agent__endpoint", "agent_version")
        .filter(pk=handoff.run_id)
        .first()
        if handoff.run_id
        else None
    )
    agent = run.agent if run else handoff.session.agent
    session = handoff.session
    version = run.agent_version if run else session.agent_version or agent.published_version
    config = agent_config_for(agent=agent, version=version)
    tracer = Tracer(
        run.pk if run else handoff.session_id,
        session_id=handoff.session_id,
        agent=agent.slug,
        secrets_to_redact=[endpoint.api_key for endpoint, _ in config.candidates],
    )
    rows = Message.objects.filter(session_id=handoff.session_id).order_by("-seq")[:30]
    conversation = [to_openai(m) for m in reversed(rows) if m.content]
    transcript = "\n".join(f"{m['role']}: {m['content']}" for m in conversation)[-6000:]
    deadline = time.monotonic() + PACKAGE_SECONDS
    package: dict[str, str] = {}
    with tracer.span("handoff.package", handoff_id=handoff.pk) as span:
        for key, prompt in (
            ("summary", HANDOFF_SUMMARY_PROMPT),
            ("suggested_reply", SUGGEST_REPLY_PROMPT),
        ):
            try:
                package[key] = _complete(
                    tracer=tracer,
                    config=config,
                    prompt=prompt,
                    transcript=transcript,
                    deadline=deadline,
                )
            except Failure as failure:
                package[key] = (
                    f"(No summary: the model failed with {failure.failure_class.value}.)"
                    if key == "summary"
                    else ""
                )
            except Exception as exc:  # the job's own time limit (RQ), or a bug
                timed_out = isinstance(exc, JobTimeoutException)
                if not timed_out:
                    log.exception("handoff.package_failed", handoff_id=handoff.pk)
                span.fail(
                    FailureClass.TIMEOUT if timed_out else FailureClass.BUG,
                    f"{type(exc).__name__}: {exc}",
                )
                package.setdefault(
                    "summary",
                    "(No summary: the model took too long.)"
                    if timed_out
                    else "(No summary: it could not be written.)",
                )
                break
    _package_save(
        handoff_id=handoff.pk,
        session_id=handoff.session_id,
        summary=package["summary"] or "(The model gave an empty summary.)",
        suggested_reply=package.get("suggested_reply", ""),
        tracer=tracer,
    )
    handoff.refresh_from_db()
    return handoff


def _package_save(
    *,
    handoff_id: int,
    session_id: Any,
    summary: str,
    suggested_reply: str,
    tracer: Tracer | None = None,
) -> None:
    """Store the package and tell the pages (which say "Being written…" until then)."""
    with transaction.atomic():
        Handoff.objects.filter(pk=handoff_id).update(
            summary=summary, suggested_reply=suggested_reply
        )
        if tracer is not None:
            tracer.flush()
    broadcast(
        OPS_GROUP,
        {"kind": "handoff.package", "handoff_id": handoff_id, "session_id": str(session_id)},
    )


def _complete(
    *,
    tracer: Tracer,
    config: AgentConfig,
    prompt: str,
    transcript: str,
    deadline: float,
) -> str:
    """The agent's models, in its order, through the one guarded call, while time is left."""
    guarded = model_call_guarded(
        tracer=tracer,
        candidates=config.candidates,
        policy=RetryPolicy(
            config.retry_max_attempts, config.retry_base_seconds, config.retry_cap_seconds
        ),
        messages=[
            {"role": "system", "content": prompt},
            {"role": "user", "content": transcript or "(empty)"},
        ],
        tools=[],
        temperature=config.temperature,
        purpose="handoff",
        deadline=deadline,
    )
    return guarded.reply.content.strip()
