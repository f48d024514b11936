"""Fixtures over real parts: embedded Postgres/Redis (see agentops.testing.plugin), the dev
model server over HTTP, real RQ worker and ASGI server processes."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import django_rq
import pytest
from django.db import connection
from django.test import Client

from agentops.testing.processes import DevModel, child_env, free_port, start_web
from tests.factories import AgentFactory, EndpointFactory, UserFactory
from tests.kit import Workers, api_key, worker_fixture


@pytest.fixture(scope="session", autouse=True)
def _clean_redis() -> None:
    django_rq.get_connection("runs").flushdb()


@pytest.fixture(scope="session", autouse=True)
def _test_database_dropped_cleanly(django_db_setup, django_db_blocker) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """Threads the tests ran (consumers' database_sync_to_async pool) keep their connections;
    the test database can only be dropped at the end once they are closed."""
    yield
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def devmodel() -> Iterator[DevModel]:
    server = DevModel()
    yield server
    server.stop()


@pytest.fixture
def alice(db):  # type: ignore[no-untyped-def]
    """An admin."""
    return UserFactory(username="alice", role="admin")


@pytest.fixture
def bob(db):  # type: ignore[no-untyped-def]
    """An operator."""
    return UserFactory(username="bob", role="operator")


@pytest.fixture
def charlie(db):  # type: ignore[no-untyped-def]
    """A viewer."""
    return UserFactory(username="charlie", role="viewer")


@pytest.fixture
def bob_key(bob: Any) -> str:
    """An API key of bob, the operator."""
    return api_key(bob)


@pytest.fixture
def admin_client(client, alice):  # type: ignore[no-untyped-def]
    """The Django admin signed in as a superuser: every model permission, so only the admin
    classes limit what it may do."""
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    return client


@pytest.fixture
def seeded_prices(db) -> None:  # type: ignore[no-untyped-def]
    """The list prices tracing's migration 0006 seeds. A transactional test that ran before in
    the same process (the order xdist deals them in) flushed them with every table."""
    from django.apps import apps

    importlib.import_module("tracing.migrations.0006_seed_model_prices").seed(apps, None)


@pytest.fixture
def model_name() -> str:
    """A model name of its own, so scripted faults never leak between tests."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def dev_agent(db, devmodel, model_name):  # type: ignore[no-untyped-def]
    endpoint = EndpointFactory(base_url=devmodel.url, default_model=model_name)
    return AgentFactory(endpoint=endpoint)


# One RQ worker process for the test module, on the test database (tests must be
# transactional). Per module, not per session: a test that starts workers of its own (to kill
# them, say) must not find another one taking its runs.
worker = worker_fixture()


@pytest.fixture
def workers(transactional_db: None) -> Iterator[Workers]:
    started = Workers()
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def web_server(django_db_setup: None) -> Iterator[str]:
    """The ASGI server (uvicorn) on the test database, once per module: starting one costs
    seconds, and it keeps nothing between tests that the database flush does not clear."""
    port = free_port()
    proc = start_web(child_env(), port)
    yield f"127.0.0.1:{port}"
    proc.stop()


@pytest.fixture
def web(transactional_db: None, web_server: str) -> str:
    """The address (host:port) of the module's ASGI server; the test is transactional, so the
    server sees its rows."""
    return web_server


@pytest.fixture
def client_as(db: None) -> Callable[[Any], Client]:
    """`client_as("operator")`: a Django test client signed in as a new user of that role
    (admin, operator, viewer); `client_as(user)`: signed in as that user."""

    def signed_in(who: Any) -> Client:
        user = UserFactory(role=who) if isinstance(who, str) else who
        client = Client()
        client.force_login(user)
        return client

    return signed_in
