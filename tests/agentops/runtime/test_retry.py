"""The one retry owner (runtime/retry.py) on its own: the backoff it draws, the failures it
retries, how it numbers attempts and what it leaves in the trace. End to end through a
worker: test_failures.py (model calls) and test_routing.py (tool calls)."""

import uuid

import pytest

from agentops.runtime.errors import WaitRequired
from agentops.runtime.retry import INLINE_WAIT_MAX, RetryPolicy, retry_call
from tracing.emit import Tracer
from tracing.platform.failures import Failure, FailureClass

pytestmark = pytest.mark.django_db

QUICK = RetryPolicy(max_attempts=3, base=0.001, cap=0.002)


class Scripted:
    """Fails with the given failures in turn, then answers; remembers each attempt number."""

    def __init__(self, *failures: Failure) -> None:
        self.failures = list(failures)
        self.attempts: list[int] = []

    def __call__(self, attempt: int) -> str:
        self.attempts.append(attempt)
        if self.failures:
            raise self.failures.pop(0)
        return "answer"


def waits(tracer: Tracer) -> list[tuple[int, str, str]]:
    return [
        (s.attributes["attempt"], s.attributes["error.type"], s.attributes["target"])
        for s in tracer.take()
        if s.name == "retry.wait"
    ]


def test_it_draws_each_backoff_with_full_jitter_under_a_doubling_cap():
    policy = RetryPolicy(max_attempts=6, base=1.0, cap=6.0)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 6.0), (5, 6.0)]:
        delays = [policy.delay(attempt) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # spread over the range, not a constant


def test_it_waits_at_least_what_retry_after_asks():
    policy = RetryPolicy(max_attempts=3, base=1.0, cap=6.0)
    assert policy.delay(1, retry_after=10.0) == 10.0
    assert all(0.5 <= policy.delay(3, retry_after=0.5) <= 4.0 for _ in range(100))


def test_it_retries_a_transient_failure_until_the_attempts_run_out():
    tracer = Tracer(uuid.uuid4())
    call = Scripted(*(Failure(FailureClass.TIMEOUT, "slow") for _ in range(5)))
    with pytest.raises(Failure, match="slow"):
        retry_call(call, policy=QUICK, tracer=tracer, what="tool t")
    assert call.attempts == [1, 2, 3]
    assert waits(tracer) == [(1, "timeout", "tool t"), (2, "timeout", "tool t")]


def test_it_returns_the_first_answer_after_failures():
    tracer = Tracer(uuid.uuid4())
    call = Scripted(Failure(FailureClass.RATE_LIMIT, "busy"), Failure(FailureClass.CONNECTION, "x"))
    assert retry_call(call, policy=QUICK, tracer=tracer, what="model m") == "answer"
    assert call.attempts == [1, 2, 3]
    assert waits(tracer) == [(1, "rate_limit", "model m"), (2, "connection", "model m")]


@pytest.mark.parametrize(
    "failure_class",
    [FailureClass.INVALID_REQUEST, FailureClass.AUTH, FailureClass.TOOL_ERROR, FailureClass.BUG],
)
def test_it_does_not_retry_a_failure_that_is_not_transient(failure_class):
    tracer = Tracer(uuid.uuid4())
    call = Scripted(Failure(failure_class, "no"))
    with pytest.raises(Failure) as caught:
        retry_call(call, policy=QUICK, tracer=tracer, what="tool t")
    assert caught.value.failure_class == failure_class
    assert call.attempts == [1] and waits(tracer) == []


def test_it_asks_the_caller_which_transient_failures_may_be_repeated():
    tracer = Tracer(uuid.uuid4())
    reached = Failure(FailureClass.TIMEOUT, "sent, no answer")
    call = Scripted(
        Failure(FailureClass.CONNECTION, "refused", may_have_reached_server=False), reached
    )
    with pytest.raises(Failure) as caught:
        retry_call(
            call,
            policy=QUICK,
            tracer=tracer,
            what="tool t",
            retryable=lambda f: f.transient and not f.may_have_reached_server,
        )
    assert caught.value is reached and call.attempts == [1, 2]


def test_it_numbers_attempts_on_from_those_already_made():
    tracer = Tracer(uuid.uuid4())
    call = Scripted(Failure(FailureClass.SERVER_ERROR, "500"))
    assert retry_call(call, policy=QUICK, tracer=tracer, what="m", attempts_made=1) == "answer"
    assert call.attempts == [2, 3] and waits(tracer) == [(2, "server_error", "m")]


def test_it_tries_again_at_once_when_the_caller_recovers():
    tracer = Tracer(uuid.uuid4())
    call = Scripted(Failure(FailureClass.AUTH, "401"), Failure(FailureClass.AUTH, "401"))
    recovered: list[FailureClass] = []

    def recover(failure: Failure) -> bool:
        recovered.append(failure.failure_class)
        return len(recovered) == 1  # one refresh only

    with pytest.raises(Failure, match="401"):
        retry_call(call, policy=QUICK, tracer=tracer, what="m", recover=recover)
    assert call.attempts == [1, 2] and waits(tracer) == []


def test_it_does_not_sleep_a_long_wait_on_the_worker():
    tracer = Tracer(uuid.uuid4())
    told: list[tuple[int, float]] = []
    call = Scripted(Failure(FailureClass.RATE_LIMIT, "later", retry_after=INLINE_WAIT_MAX + 30))
    with pytest.raises(Failure, match="later"):
        retry_call(
            call,
            policy=QUICK,
            tracer=tracer,
            what="t",
            before_wait=lambda failure, attempt, delay: told.append((attempt, delay)),
        )
    assert told == [(1, INLINE_WAIT_MAX + 30)] and call.attempts == [1] and waits(tracer) == []


def test_it_lets_the_caller_turn_a_wait_into_a_wait_required():
    tracer = Tracer(uuid.uuid4())

    def release_the_worker(failure: Failure, attempt: int, delay: float) -> None:
        raise WaitRequired(delay, f"backoff after {failure.failure_class.value}")

    call = Scripted(Failure(FailureClass.RATE_LIMIT, "later", retry_after=30))
    with pytest.raises(WaitRequired) as caught:
        retry_call(call, policy=QUICK, tracer=tracer, what="m", before_wait=release_the_worker)
    assert caught.value.delay == 30 and call.attempts == [1]
