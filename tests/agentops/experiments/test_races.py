"""Two people creating the same dataset at once, on real Postgres (two threads, two
connections): one dataset, and the other gets the form error, never a 500."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from agentops.experiments.models import Dataset
from agentops.experiments.services import dataset_create

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_creates_one_dataset_when_two_people_name_it_at_once(alice, bob):
    outcomes: list[str] = []
    for attempt in range(30):
        name = f"regressions {attempt}"
        barrier = threading.Barrier(2)

        def create(user, name: str = name, barrier: threading.Barrier = barrier) -> None:  # type: ignore[no-untyped-def]
            try:
                barrier.wait(10)
                dataset_create(name=name, actor=user)
                outcomes.append("created")
            except ValidationError as exc:
                outcomes.append("refused" if "exists already" in str(exc) else repr(exc))
            except Exception as exc:  # an IntegrityError would be a 500
                outcomes.append(repr(exc))
            finally:
                connection.close()

        threads = [threading.Thread(target=create, args=(u,)) for u in (alice, bob)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert Dataset.objects.filter(name=name).count() == 1
    assert sorted(set(outcomes)) == ["created", "refused"]
    assert outcomes.count("created") == 30
