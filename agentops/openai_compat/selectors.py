"""Reads of the OpenAI-compatible endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentops.auth import has_role
from agentops.conversation import HandoffBrief, handoff_serialise
from agentops.models import Agent, AgentQuerySet, Handoff, Message, Role, Run
from tracing.platform.types import RequestUser, RunId, SessionId


def agents_usable(*, user: RequestUser) -> AgentQuerySet:
    """The agents a key may talk to: all of them for operators and admins (who may post
    messages through the API), none for viewers."""
    if not has_role(user, "operator"):
        return Agent.objects.none()
    return Agent.objects.order_by("slug")


def agents_listed(*, user: RequestUser) -> list[Agent]:
    """The models (MCP tools) a key is shown: its usable agents that answer outside their
    draft chat (AgentQuerySet.live); naming another is refused when it is used."""
    return list(agents_usable(user=user).live())


def agent_by_model(*, user: RequestUser, model: str) -> Agent | None:
    """The agent a request's `model` names: its slug, else its exact (unique) name."""
    agents = agents_usable(user=user)
    agent = agents.filter(slug=model).first()
    if agent is None:
        named = list(agents.filter(name__iexact=model)[:2])
        agent = named[0] if len(named) == 1 else None
    return agent


@dataclass
class RunOutcome:
    """What a finished (or still running) run gives back to an OpenAI client."""

    run_id: RunId | None
    status: str
    error_class: str = ""
    error_message: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    # The run's assistant messages, oldest first: (id, content).
    answers: list[tuple[int, str]] = field(default_factory=list)
    handoff: HandoffBrief | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("succeeded", "failed", "cancelled", "handed_off")


def handoff_info(handoff: Handoff | None) -> HandoffBrief | None:
    """The conversation's handoff shape (the API's `HandoffStateOut`), or None."""
    return handoff_serialise(handoff) if handoff is not None else None


def session_handoff(*, session_id: SessionId) -> HandoffBrief | None:
    """The session's latest handoff, if any."""
    handoff = (
        Handoff.objects.select_related("claimed_by", "team")
        .filter(session_id=session_id)
        .order_by("-created_at", "-id")
        .first()
    )
    return handoff_info(handoff)


def run_outcome(*, run_id: RunId) -> RunOutcome:
    run = Run.objects.get(pk=run_id)
    outcome = RunOutcome(
        run_id=run.pk,
        status=run.status,
        error_class=run.error_class,
        error_message=run.error_message,
        tokens_in=run.tokens_in,
        tokens_out=run.tokens_out,
    )
    if outcome.finished:
        outcome.answers = list(
            Message.objects.filter(run_id=run.pk, role=Role.ASSISTANT)
            .order_by("seq")
            .values_list("id", "content")
        )
    if run.status == "handed_off":
        outcome.handoff = handoff_info(
            Handoff.objects.select_related("claimed_by", "team").filter(run_id=run.pk).first()
        ) or session_handoff(session_id=run.session_id)
    return outcome
