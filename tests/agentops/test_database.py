import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agentops.models import RunStatus, Session
from agentops.runtime.services import session_create
from agentops.testing.processes import (
    child_env,
    free_port,
    postgres_end_backends,
    postgres_full,
    start_web,
)
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import SessionFactory
from tests.kit import until


def test_it_has_the_pgvector_extension(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        (version,) = cursor.fetchone()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (0, 8)


def test_it_has_an_hnsw_cosine_index_on_memory_embeddings(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'memory_embedding_hnsw'")
        (definition,) = cursor.fetchone()
    assert "USING hnsw" in definition
    assert "vector_cosine_ops" in definition


def test_it_runs_on_postgres(db):
    assert connection.vendor == "postgresql"


# -- connections under load: bounded, returned, and a clear 503 beyond capacity ------------
BURST = 200
POOL_SIZE = 8
WEB_APP_NAME = "agentops-test-web"


@pytest.fixture
def pooled_web(transactional_db) -> Iterator[str]:
    """A web server that waits at most 1 s for a database connection, so a burst on this
    2-core machine can exceed what it serves in time."""
    port = free_port()
    proc = start_web(
        child_env(DB_POOL_SIZE=str(POOL_SIZE), DB_POOL_TIMEOUT="1", PGAPPNAME=WEB_APP_NAME), port
    )
    yield f"http://127.0.0.1:{port}"
    proc.stop()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text[:500]
    assert int(response.headers["Retry-After"]) >= 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_survives_a_burst_and_finishes_every_accepted_run(
    pooled_web, worker, dev_agent, bob_key
):
    sessions = [session_create(agent=dev_agent, external_user=f"burst-{i}") for i in range(BURST)]
    headers = {"Authorization": f"Bearer {bob_key}"}
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    with httpx.Client(base_url=pooled_web, headers=headers, timeout=120, limits=limits) as client:
        start = threading.Barrier(BURST)

        def post(session: Session) -> httpx.Response:
            start.wait()
            return client.post(f"/api/sessions/{session.pk}/messages", json={"content": "hello"})

        with ThreadPoolExecutor(BURST) as pool:
            responses = list(pool.map(post, sessions))

        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) <= {202, 409, 503}, (
            statuses,
            [r.text[:300] for r in responses if r.status_code >= 500][:3],
        )
        for response in responses:
            if response.status_code == 503:
                assert_unavailable(response)
                assert response.json()["error"]
        accepted = [r.json()["run"] for r in responses if r.status_code == 202]
        assert accepted

        for session in sessions:
            assert client.get(f"/api/sessions/{session.pk}").status_code == 200
        for run_id in accepted:
            assert client.get(f"/api/runs/{run_id}").status_code == 200
    assert web_backends() <= POOL_SIZE

    for run_id in accepted:
        assert wait_for_run(run_id, timeout=180).status == RunStatus.SUCCEEDED


def web_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [WEB_APP_NAME]
        )
        return cursor.fetchone()[0]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_answers_503_while_postgres_refuses_and_recovers_by_itself(pooled_web, bob_key):
    session = SessionFactory()
    headers = {"Authorization": f"Bearer {bob_key}"}
    with httpx.Client(base_url=pooled_web, headers=headers, timeout=30) as client:
        assert client.get(f"/api/sessions/{session.pk}").status_code == 200
        postgres_end_backends(application_name=WEB_APP_NAME)
        with postgres_full():
            api = client.get(f"/api/sessions/{session.pk}")
            assert_unavailable(api)
            assert "database" in api.json()["error"]
            page = client.get("/runs/")
            assert_unavailable(page)
            assert page.headers["Content-Type"].startswith("text/html")

        def served() -> bool:
            status = client.get(f"/api/sessions/{session.pk}").status_code
            assert status in (200, 503), status
            return status == 200

        until(served, seconds=60, every=0.2)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_closes_a_websocket_with_try_again_later_while_postgres_refuses(pooled_web, bob):
    session = SessionFactory()
    browser = Client()
    browser.force_login(bob)
    url = pooled_web.replace("http://", "ws://") + f"/ws/sessions/{session.pk}/"

    async def first_message() -> tuple[int | None, str]:
        async with connect(
            url,
            additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid'].value}"},
            origin=pooled_web,
        ) as ws:
            try:
                return None, json.loads(await asyncio.wait_for(ws.recv(), 20))["kind"]
            except ConnectionClosed as closed:
                assert closed.rcvd is not None
                return closed.rcvd.code, closed.rcvd.reason

    assert asyncio.run(first_message()) == (None, "snapshot")
    postgres_end_backends(application_name=WEB_APP_NAME)
    with postgres_full():
        code, reason = asyncio.run(first_message())
    assert code == 1013 and "database" in reason
    # The pool reconnects by itself.
    until(lambda: asyncio.run(first_message())[0] != 1013, seconds=60, every=0.2)
    assert asyncio.run(first_message()) == (None, "snapshot")
