"""Python tools' time limit: interrupted where they are, the job's own alarm kept."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from django.db import connection

from tools.deadline import ToolTimeout, call_with_deadline


def nap(seconds: float, log: list[str]) -> str:
    try:
        time.sleep(seconds)  # on purpose: the slow call a deadline cuts short
        return "rested"
    finally:
        log.append("finally ran")


class JobTimeout(Exception):
    pass


@pytest.fixture
def job_alarm():
    """An alarm like RQ's job timeout (SIGALRM with a handler that raises)."""

    def handler(signum, frame):
        raise JobTimeout

    previous = signal.signal(signal.SIGALRM, handler)
    yield handler
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_it_interrupts_a_function_where_it_is(job_alarm):
    signal.setitimer(signal.ITIMER_REAL, 60)
    log: list[str] = []
    with pytest.raises(ToolTimeout):
        call_with_deadline(nap, {"seconds": 30, "log": log}, seconds=0.2)
    assert log == ["finally ran"]
    assert signal.getsignal(signal.SIGALRM) is job_alarm
    assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 60  # the job's alarm runs on


def test_it_returns_a_result_in_time_and_gives_the_job_its_alarm_back(job_alarm):
    signal.setitimer(signal.ITIMER_REAL, 60)
    assert call_with_deadline(nap, {"seconds": 0, "log": []}, seconds=5) == "rested"
    assert signal.getsignal(signal.SIGALRM) is job_alarm
    assert 0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 60


def test_it_lets_the_jobs_own_timeout_fire_first(job_alarm):
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    with pytest.raises(JobTimeout):
        call_with_deadline(nap, {"seconds": 30, "log": []}, seconds=20)
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0  # not armed a second time


def test_it_times_out_off_the_main_thread_too():
    raised: list[BaseException] = []

    def request_thread() -> None:
        try:
            call_with_deadline(nap, {"seconds": 30, "log": []}, seconds=0.2)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=request_thread)
    thread.start()
    thread.join(20)
    assert [type(e) for e in raised] == [ToolTimeout]


def test_it_leaves_the_connection_usable_after_interrupting_a_query(transactional_db):
    def slow_query() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(30)")

    with pytest.raises(ToolTimeout):
        call_with_deadline(slow_query, {}, seconds=0.3)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
