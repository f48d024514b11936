"""Datasets and experiments. An experiment runs each dataset item against each variant (an
agent version) as an ordinary run of the runtime, in a session of its own pinned to the
version with the item's context copied in first, then scores the answer by its checks.

Each item x variant is a chain of RQ jobs: `result_start_job` makes the session and posts the
input (the run goes through `run_enqueue`, so the agent's dispatch limit applies to it like to
any run), the run's own job drives it, and when it ends `result_score_job` scores it. At most
EXPERIMENT_MAX_CONCURRENT_RUNS items of one experiment are in flight at once, which leaves the
rest of the agent's limit to live conversations."""

from __future__ import annotations

import traceback
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from agentops.agents.services import agent_version_derive
from agentops.events import audit_record
from agentops.experiments.models import (
    IN_FLIGHT,
    Check,
    CheckKind,
    Dataset,
    DatasetItem,
    Experiment,
    ExperimentStatus,
    ItemSource,
    Result,
    ResultStatus,
    Variant,
)
from agentops.experiments.scoring import check_score, check_validate
from agentops.experiments.selectors import Turn, turn_from_handoff, turn_from_run
from agentops.hooks import Event
from agentops.models import (
    FINISHED_RUN_STATUSES,
    AgentVersion,
    ForkTools,
    Handoff,
    Message,
    ModelEndpoint,
    Role,
    Run,
    Session,
    SessionStatus,
    ToolCall,
)
from agentops.observe.selectors import run_costs
from agentops.runtime.agent_calls import chain_first, chain_last
from agentops.runtime.checkpoint import messages_append
from agentops.runtime.context import message_tokens
from agentops.runtime.services import MAX_MESSAGE_CHARS, session_post_message
from tracing.platform.enqueue import queue_job_on_commit
from tracing.platform.json_input import json_parse
from tracing.platform.logs import get_logger
from tracing.platform.types import RunId

if TYPE_CHECKING:
    from agentops.auth import Actor

log = get_logger(__name__)

MAX_CONTEXT_MESSAGES = 200
EXPERIMENT_STUCK_SECONDS = 120
MAX_IMPORT_LINES = 10_000
CONTEXT_ROLES = (Role.USER, Role.ASSISTANT, Role.OPERATOR)


def _user(actor: Actor) -> User | None:
    return actor if isinstance(actor, User) and actor.is_authenticated else None


# -- datasets -------------------------------------------------------------------------------
def dataset_create(*, name: str, description: str = "", actor: Actor) -> Dataset:
    name = name.strip()
    if not name:
        raise ValidationError({"name": ["Give the dataset a name."]})
    if len(name) > 200:
        raise ValidationError({"name": ["At most 200 characters."]})
    taken = ValidationError({"name": [f"A dataset named {name!r} exists already."]})
    if Dataset.objects.filter(name=name).exists():
        raise taken
    try:
        with transaction.atomic():  # created meanwhile by someone else: the same error
            dataset = Dataset.objects.create(
                name=name, description=description[:5000], created_by=_user(actor)
            )
    except IntegrityError:
        raise taken from None
    audit_record(actor=actor, action="dataset.create", target=name)
    return dataset


def dataset_delete(*, dataset: Dataset, actor: Actor) -> None:
    audit_record(actor=actor, action="dataset.delete", target=dataset.name)
    dataset.delete()


def _context_clean(context: object, *, field: str = "context") -> list[dict[str, str]]:
    if not isinstance(context, list):
        raise ValidationError({field: ["Give a list of {role, content} messages."]})
    if len(context) > MAX_CONTEXT_MESSAGES:
        raise ValidationError({field: [f"At most {MAX_CONTEXT_MESSAGES} messages."]})
    cleaned = []
    for index, message in enumerate(context):
        if (
            not isinstance(message, dict)
            or message.get("role") not in CONTEXT_ROLES
            or not isinstance(message.get("content"), str)
            or not message["content"].strip()
        ):
            raise ValidationError(
                {
                    f"{field}.{index}": [
                        "Each message needs a role (user, assistant or operator) and a "
                        "non-empty text content."
                    ]
                }
            )
        if len(message["content"]) > MAX_MESSAGE_CHARS or "\x00" in message["content"]:
            raise ValidationError({f"{field}.{index}": ["Content too long or holds NUL."]})
        cleaned.append({"role": message["role"], "content": message["content"]})
    return cleaned


def _text_clean(value: object, *, field: str, required: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError({field: ["Give a text."]})
    if required and not value.strip():
        raise ValidationError({field: ["Must not be empty."]})
    if len(value) > MAX_MESSAGE_CHARS:
        raise ValidationError({field: [f"At most {MAX_MESSAGE_CHARS} characters."]})
    if "\x00" in value:
        raise ValidationError({field: ["Must not contain NUL characters."]})
    return value


def dataset_item_create(
    *,
    dataset: Dataset,
    input: str,
    context: object = (),
    reference: str = "",
    source: str = ItemSource.API,
    source_run: Run | None = None,
    actor: Actor,
) -> DatasetItem:
    item = DatasetItem.objects.create(
        dataset=dataset,
        input=_text_clean(input, field="input", required=True),
        context=_context_clean(list(context) if isinstance(context, tuple) else context),
        reference=_text_clean(reference, field="reference", required=False),
        source=source,
        source_run=source_run,
        created_by=_user(actor),
    )
    return item


def _from_turn(
    *, dataset: Dataset, turn: Turn | None, source: str, reference: str | None, actor: Actor
) -> DatasetItem:
    if turn is None:
        raise ValidationError({"source": ["This conversation has no user message to test."]})
    item = dataset_item_create(
        dataset=dataset,
        input=turn.input,
        context=turn.context,
        reference=turn.reference if reference is None else reference,
        source=source,
        source_run=turn.run,
        actor=actor,
    )
    audit_record(
        actor=actor, action="dataset.add", target=dataset.name, item=item.pk, source=source
    )
    return item


def dataset_item_from_run(
    *, dataset: Dataset, run: Run, actor: Actor, reference: str | None = None
) -> DatasetItem:
    """The turn a run answered; a failed run is a `failure` item (its reference to write)."""
    source = ItemSource.FAILURE if run.status == "failed" else ItemSource.RUN
    return _from_turn(
        dataset=dataset,
        turn=turn_from_run(run=run),
        source=source,
        reference=reference,
        actor=actor,
    )


def dataset_item_from_handoff(
    *, dataset: Dataset, handoff: Handoff, actor: Actor, reference: str | None = None
) -> DatasetItem:
    """The turn the agent handed off; the operator's reply is the reference answer."""
    return _from_turn(
        dataset=dataset,
        turn=turn_from_handoff(handoff=handoff),
        source=ItemSource.HANDOFF,
        reference=reference,
        actor=actor,
    )


def dataset_item_update(
    *, item: DatasetItem, reference: str | None = None, input: str | None = None
) -> DatasetItem:
    if reference is not None:
        item.reference = _text_clean(reference, field="reference", required=False)
    if input is not None:
        item.input = _text_clean(input, field="input", required=True)
    item.save(update_fields=["reference", "input"])
    return item


def dataset_item_delete(*, item: DatasetItem, actor: Actor) -> None:
    audit_record(actor=actor, action="dataset.remove", target=item.dataset.name, item=item.pk)
    item.delete()


@transaction.atomic
def dataset_import_jsonl(*, dataset: Dataset, text: str, actor: Actor) -> int:
    """Add one item per line of {"input", "context"?, "reference"?}; all or nothing, and an
    error names the line and the field."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(lines) > MAX_IMPORT_LINES:
        raise ValidationError({"file": [f"At most {MAX_IMPORT_LINES} lines at once."]})
    items = []
    for number, line in lines:
        try:
            row = json_parse(line)
        except ValueError as exc:
            raise ValidationError({"file": [f"line {number}: not JSON ({exc})."]}) from None
        if not isinstance(row, dict):
            raise ValidationError({"file": [f"line {number}: give a JSON object."]})
        unknown = sorted(set(row) - {"input", "context", "reference"})
        if unknown:
            raise ValidationError({"file": [f"line {number}: unknown field {unknown[0]!r}."]})
        try:
            items.append(
                DatasetItem(
                    dataset=dataset,
                    input=_text_clean(row.get("input"), field="input", required=True),
                    context=_context_clean(row.get("context", [])),
                    reference=_text_clean(
                        row.get("reference", ""), field="reference", required=False
                    ),
                    source=ItemSource.IMPORT,
                    created_by=_user(actor),
                )
            )
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise ValidationError({"file": [f"line {number}: {field}: {messages[0]}"]}) from None
    DatasetItem.objects.bulk_create(items)
    audit_record(actor=actor, action="dataset.import", target=dataset.name, items=len(items))
    return len(items)


# -- experiments ----------------------------------------------------------------------------
def _version_label(version: AgentVersion) -> str:
    model = version.config.get("model") or ""
    label = f"{version.agent.slug} v{version.number}" + (f" ({model})" if model else "")
    limit = Variant._meta.get_field("label").max_length or len(label)
    return label if len(label) <= limit else label[: limit - 1] + "…"  # a 200-character model


def _check_build(spec: dict[str, Any], position: int) -> Check:
    kind = spec.get("kind")
    expected = spec.get("expected") or ""
    schema = spec.get("schema")
    endpoint = None
    endpoint_id = spec.get("endpoint")
    if kind == CheckKind.JUDGE:
        endpoint = ModelEndpoint.objects.filter(pk=endpoint_id).first() if endpoint_id else None
    if not isinstance(expected, str) or not isinstance(spec.get("rubric") or "", str):
        raise ValidationError({"expected": ["Give a text."]})
    kind = str(kind)
    check_validate(kind=kind, expected=expected, schema=schema, endpoint=endpoint)
    return Check(
        position=position,
        kind=kind,
        expected=expected,
        schema=schema if kind == CheckKind.JSON_SCHEMA else None,
        rubric=(spec.get("rubric") or "")[:10_000],
        endpoint=endpoint,
        model=(spec.get("model") or "")[:200],
    )


@transaction.atomic
def experiment_create(
    *,
    name: str,
    dataset: Dataset,
    variants: list[dict[str, Any]],
    checks: list[dict[str, Any]],
    threshold: float | None = None,
    actor: Actor,
) -> Experiment:
    """`variants`: [{"version": id, "model"?: name}] — with a model, the version is derived
    (agent_version_derive) into an unpublished one running that model. The first variant is the
    baseline. `checks`: [{"kind", "expected"?, "schema"?, "rubric"?, "endpoint"?, "model"?}]."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError({"name": ["Give a name of 1 to 200 characters."]})
    if not variants:
        raise ValidationError({"variants": ["Choose at least one agent version."]})
    if not checks:
        raise ValidationError({"checks": ["Add at least one check."]})
    if threshold is not None and not 0 <= threshold <= 1:
        raise ValidationError({"threshold": ["Give a score between 0 and 1."]})
    built_checks = []
    for index, spec in enumerate(checks):
        try:
            built_checks.append(_check_build(spec, index))
        except ValidationError as exc:
            field, messages = next(iter(exc.message_dict.items()))
            raise ValidationError({f"checks.{index}.{field}": messages}) from None
    versions = []
    for index, spec in enumerate(variants):
        version_id = spec.get("version")
        version = (
            AgentVersion.objects.select_related("agent").filter(pk=version_id).first()
            if isinstance(version_id, int) and not isinstance(version_id, bool)
            else None
        )
        if version is None:
            raise ValidationError({f"variants.{index}.version": ["No such agent version."]})
        model = spec.get("model") or ""
        if model:
            try:
                version = agent_version_derive(
                    version=version,
                    changes={"model": model},
                    author=actor,
                    note=f"v{version.number} with model {model}, for experiment {name}",
                )
            except ValidationError as exc:
                raise ValidationError({f"variants.{index}.model": exc.messages}) from None
        versions.append(version)
    experiment = Experiment.objects.create(
        name=name, dataset=dataset, threshold=threshold, created_by=_user(actor)
    )
    for check in built_checks:
        check.experiment = experiment
    Check.objects.bulk_create(built_checks)
    Variant.objects.bulk_create(
        Variant(experiment=experiment, position=i, version=v, label=_version_label(v))
        for i, v in enumerate(versions)
    )
    audit_record(actor=actor, action="experiment.create", target=name, experiment=experiment.pk)
    return experiment


def check_update(*, check: Check, rubric: str | None = None, expected: str | None = None) -> Check:
    """Edit a check (a judge's rubric, a pattern); `experiment_rescore` applies it."""
    if rubric is not None:
        check.rubric = _text_clean(rubric, field="rubric", required=False)[:10_000]
    if expected is not None:
        check.expected = _text_clean(expected, field="expected", required=False)
    check_validate(
        kind=check.kind, expected=check.expected, schema=check.schema, endpoint=check.endpoint
    )
    check.save(update_fields=["rubric", "expected"])
    return check


def experiment_start(*, experiment: Experiment, actor: Actor) -> Experiment:
    """Make a result per item x variant and start the first window of them."""
    with transaction.atomic():
        locked = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if locked.status != ExperimentStatus.DRAFT:
            raise ValidationError({"status": [f"This experiment is {locked.status} already."]})
        items = list(locked.dataset.items.order_by("pk").values_list("pk", flat=True))
        if not items:
            raise ValidationError({"dataset": ["The dataset has no items."]})
        variants = list(locked.variants.order_by("position").values_list("pk", flat=True))
        Result.objects.bulk_create(
            Result(experiment=locked, item_id=item, variant_id=variant)
            for item in items
            for variant in variants
        )
        locked.status = ExperimentStatus.RUNNING
        locked.started_at = timezone.now()
        locked.save(update_fields=["status", "started_at"])
        audit_record(actor=actor, action="experiment.run", target=locked.name)
    experiment_advance(experiment_id=locked.pk)
    experiment.refresh_from_db()
    return experiment


def _enqueue(function: str, *args: object) -> None:
    queue_job_on_commit(
        queue=settings.EXPERIMENT_QUEUE,
        func=function,
        args=args,
        job_timeout=settings.RUN_JOB_TIMEOUT,
        result_ttl=60,
        sweep="experiments_reconcile",
    )


def experiment_advance(*, experiment_id: int) -> int:
    """Start pending results while fewer than EXPERIMENT_MAX_CONCURRENT_RUNS are in flight;
    finish the experiment when none is left. Returns how many were started."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().filter(pk=experiment_id).first()
        if experiment is None or experiment.status != ExperimentStatus.RUNNING:
            return 0
        results = Result.objects.filter(experiment_id=experiment_id)
        in_flight = results.filter(status__in=IN_FLIGHT).count()
        free = settings.EXPERIMENT_MAX_CONCURRENT_RUNS - in_flight
        started = []
        if free > 0:
            started = list(
                results.filter(status=ResultStatus.PENDING)
                .order_by("item_id", "variant__position")
                .values_list("pk", flat=True)[:free]
            )
            Result.objects.filter(pk__in=started).update(
                status=ResultStatus.STARTING, started_at=timezone.now()
            )
            for result_id in started:
                _enqueue("agentops.experiments.jobs.result_start_job", result_id)
        if (
            not started
            and in_flight == 0
            and not results.filter(status=ResultStatus.PENDING).exists()
        ):
            experiment.status = ExperimentStatus.FINISHED
            experiment.finished_at = timezone.now()
            experiment.save(update_fields=["status", "finished_at"])
            _sessions_end(session_ids=list(results.values_list("session_id", flat=True)))
            log.info("experiment.finished", experiment_id=experiment_id)
        return len(started)


def _fail(result_id: int, exc: BaseException) -> None:
    Result.objects.filter(pk=result_id).update(
        status=ResultStatus.ERROR,
        error_class=type(exc).__name__[:40],
        error_message=str(exc)[:2000],
        error_traceback="".join(traceback.format_exception(exc))[-10_000:],
        finished_at=timezone.now(),
    )


def result_start(*, result_id: int) -> None:
    """A session pinned to the variant's version, the item's context copied in, and the input
    posted as the end user's message: the runtime takes it from there."""
    result = (
        Result.objects.select_related("item", "variant__version__agent", "experiment")
        .filter(pk=result_id, status=ResultStatus.STARTING)
        .first()
    )
    if result is None:
        return
    try:
        with transaction.atomic():
            # A job sent again by the sweep may run beside the first: one starts it.
            if (
                not Result.objects.select_for_update()
                .filter(pk=result_id, status=ResultStatus.STARTING)
                .exists()
            ):
                return
            version = result.variant.version
            session = Session.objects.create(
                agent=version.agent,
                agent_version=version,
                external_user=f"experiment-{result.experiment_id}",
                sandbox=True,
                title=f"{result.experiment.name[:150]} · item {result.item_id}",
                **experiment_session_policy(),
            )
            messages_append(
                session_id=session.pk,
                messages=[
                    Message(
                        role=m["role"],
                        content=m["content"],
                        token_count=message_tokens(content=m["content"]),
                    )
                    for m in result.item.context
                ],
            )
            run = session_post_message(session=session, content=result.item.input)
            assert run is not None
            experiment_run_link(run=run, source_run_id=result.item.source_run_id)
            Result.objects.filter(pk=result_id).update(
                status=ResultStatus.RUNNING, session=session, run=run
            )
    except Exception as exc:
        log.exception("experiment.start_failed", result_id=result_id)
        _fail(result_id, exc)
        experiment_advance(experiment_id=result.experiment_id)


def experiment_session_policy() -> dict[str, Any]:
    """Fields of an experiment's session that keep its tools from touching the world: the
    forks' policy (runtime/tooling.py `fork_guard`) answers a non-idempotent call from the
    recording, else refuses it; idempotent tools run."""
    return {"fork_tools": ForkTools.REPLAY}


def experiment_run_link(*, run: Run, source_run_id: RunId | None) -> None:
    """The item's recorded run is the recording the policy answers from (same tool, same
    arguments, in order). Not a fork at a step: `forked_at_step` stays empty."""
    if source_run_id is not None:
        Run.objects.filter(pk=run.pk).update(forked_from_id=source_run_id)


def result_run_finished(*, run_id: RunId) -> None:
    """Told by the run's job when it ends: an experiment's run that finished gets scored —
    once its turn has ended (a run its agent transferred on is scored by the last one)."""
    try:
        run = Run.objects.filter(pk=run_id, session__sandbox=True).first()  # experiments' are
        if run is None or chain_last(run).status not in FINISHED_RUN_STATUSES:
            return  # transferred on: the turn goes on
        result_id = (
            Result.objects.filter(
                run_id=chain_first(run).pk,
                status=ResultStatus.RUNNING,
                run__status__in=FINISHED_RUN_STATUSES,
            )
            .values_list("pk", flat=True)
            .first()
        )
        if result_id and Result.objects.filter(pk=result_id, status=ResultStatus.RUNNING).update(
            status=ResultStatus.SCORING
        ):
            _enqueue("agentops.experiments.jobs.result_score_job", result_id)
    except DatabaseError as exc:
        log.warning("experiment.score_deferred", run_id=str(run_id), error=str(exc))


def _measure(result: Result) -> dict[str, Any]:
    assert result.run_id is not None
    first = Run.objects.get(pk=result.run_id)
    chain = [first]  # the turn's runs: its agent may have transferred it on
    while (successor := Run.objects.filter(transferred_from=chain[-1]).first()) is not None:
        chain.append(successor)
    run = chain[-1]
    output = (
        Message.objects.filter(run=run, role=Role.ASSISTANT)
        .exclude(content="")
        .order_by("-seq")
        .values_list("content", flat=True)
        .first()
    ) or ""
    latency = None
    if first.started_at and run.finished_at:
        latency = int((run.finished_at - first.started_at).total_seconds() * 1000)
    costs = run_costs(runs=chain)
    return {
        "run_status": run.status,
        "output": output,
        "latency_ms": latency,
        "tokens_in": sum(r.tokens_in for r in chain),
        "tokens_out": sum(r.tokens_out for r in chain),
        "cost": sum((costs.get(r.pk, 0) for r in chain), 0),
        "tool_calls": ToolCall.objects.filter(run__in=chain).count(),
        "error_class": run.error_class,
        "error_message": run.error_message[:2000],
    }


def result_score(*, result_id: int) -> None:
    """Measure the finished run and score its answer by every check of the experiment."""
    result = Result.objects.select_related("item", "experiment").filter(pk=result_id).first()
    if result is None or result.status not in (ResultStatus.SCORING, ResultStatus.DONE):
        return
    try:
        fields = (
            _measure(result) if result.status == ResultStatus.SCORING else {"output": result.output}
        )
        scores = {}
        for check in result.experiment.checks.select_related("endpoint").order_by("position"):
            scores[str(check.pk)] = check_score(
                check=check,
                output=fields["output"],
                item_input=result.item.input,
                reference=result.item.reference,
            ).as_json()
        values = [s["score"] for s in scores.values() if s["score"] is not None]
        Result.objects.filter(pk=result_id).update(
            **fields,
            scores=scores,
            score=sum(values) / len(values) if values else None,
            status=ResultStatus.DONE,
            finished_at=result.finished_at or timezone.now(),
        )
    except Exception as exc:
        log.exception("experiment.score_failed", result_id=result_id)
        _fail(result_id, exc)
    _sessions_end(session_ids=[result.session_id])
    experiment_advance(experiment_id=result.experiment_id)


def _sessions_end(*, session_ids: list[Any]) -> None:
    """A scored item's conversation is over: closed, so nothing shows it active for ever."""
    Session.objects.sandbox().filter(pk__in=[s for s in session_ids if s]).exclude(
        status=SessionStatus.CLOSED
    ).update(status=SessionStatus.CLOSED, updated_at=timezone.now())


def experiments_reconcile(*, now: datetime | None = None) -> dict[str, int]:
    """The scheduler's sweep for jobs Redis lost or workers dropped: a pair still starting
    after EXPERIMENT_STUCK_SECONDS is sent again, a finished run not yet scored is scored, and
    running experiments advance. Safe to run anywhere, any number of times."""
    now = now or timezone.now()
    before = now - timedelta(seconds=EXPERIMENT_STUCK_SECONDS)
    counts = {"restarted": 0, "scored": 0}
    for result_id in Result.objects.filter(
        status=ResultStatus.STARTING, started_at__lt=before
    ).values_list("pk", flat=True):
        Result.objects.filter(pk=result_id).update(started_at=now)
        _enqueue("agentops.experiments.jobs.result_start_job", result_id)
        counts["restarted"] += 1
    for run_id in Result.objects.filter(
        status=ResultStatus.RUNNING, run__status__in=FINISHED_RUN_STATUSES
    ).values_list("run_id", flat=True):
        result_run_finished(run_id=run_id)
        counts["scored"] += 1
    for result_id in Result.objects.filter(
        status=ResultStatus.SCORING, run__finished_at__lt=before
    ).values_list("pk", flat=True):
        _enqueue("agentops.experiments.jobs.result_score_job", result_id)
        counts["scored"] += 1
    for experiment_id in Experiment.objects.filter(status=ExperimentStatus.RUNNING).values_list(
        "pk", flat=True
    ):
        experiment_advance(experiment_id=experiment_id)
    return counts


def experiment_rescore(*, experiment: Experiment, actor: Actor) -> int:
    """Score the finished answers again (after a rubric or pattern was edited)."""
    ids = list(experiment.results.filter(status=ResultStatus.DONE).values_list("pk", flat=True))
    for result_id in ids:
        _enqueue("agentops.experiments.jobs.result_score_job", result_id)
    audit_record(actor=actor, action="experiment.rescore", target=experiment.name)
    return len(ids)


def results_on_run_job_ended(event: Event) -> None:
    """A hook subscriber (ExperimentsConfig.ready): a worker is done with a run's job."""
    if event.data.get("sandbox") is not False:  # an experiment's session is a sandbox
        result_run_finished(run_id=event.data["run_id"])
