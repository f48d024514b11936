"""`/v1/chat/completions` and `/v1/models` through the official `openai` client, against a
real uvicorn serving the product, a real RQ worker and the dev model."""

from __future__ import annotations

import threading

import httpx
import openai
import psutil
import pytest

from agentops.auth import api_key_create
from agentops.conversation import handoff_serialise
from agentops.models import (
    Handoff,
    Message,
    Role,
    Run,
    RunStatus,
    Session,
    SessionStatus,
    Team,
)
from agentops.openai_compat.app import HANDOFF_NOTICE
from tests.agentops.runtime.helpers import wait_for_run
from tests.factories import AgentFactory
from tests.kit import until
from tools.services import python_tools_sync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def agent(dev_agent):
    dev_agent.tools.add(*python_tools_sync())
    return dev_agent


@pytest.fixture
def key(bob) -> str:
    return api_key_create(user=bob, name="openai")[1]


@pytest.fixture
def client(web, key, worker) -> openai.OpenAI:
    # No retries: a test sees each answer as the server gave it.
    return openai.OpenAI(base_url=f"http://{web}/v1", api_key=key, max_retries=0, timeout=60)


def user_messages(session_id) -> list[str]:
    return list(
        Message.objects.filter(session_id=session_id, role=Role.USER)
        .order_by("seq")
        .values_list("content", flat=True)
    )


def test_it_answers_with_the_agents_reply(client, agent):
    completion = client.chat.completions.create(
        model=agent.slug, messages=[{"role": "user", "content": "hello there"}]
    )
    assert completion.object == "chat.completion"
    assert completion.model == agent.slug
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "You said: hello there"
    assert choice.finish_reason == "stop"
    extra = completion.model_extra or {}
    run = Run.objects.get(pk=extra["run_id"])
    assert run.status == RunStatus.SUCCEEDED
    assert str(run.session_id) == extra["session_id"] and extra["handoff"] is None
    assert completion.usage is not None
    assert completion.usage.completion_tokens == run.tokens_out > 0
    assert user_messages(run.session_id) == ["hello there"]


def test_it_streams_the_answer_as_chunks(client, agent):
    stream = client.chat.completions.create(
        model=agent.slug,
        messages=[{"role": "user", "content": "tell me a few words please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(texts) == "You said: tell me a few words please"
    assert len(texts) > 1  # token by token, not one block at the end
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    session = Session.objects.get(pk=(finals[0].model_extra or {})["session_id"])
    assert user_messages(session.pk) == ["tell me a few words please"]


def test_it_continues_a_session_by_header_or_by_user(client, agent):
    first = client.chat.completions.with_raw_response.create(
        model=agent.slug, messages=[{"role": "user", "content": "one"}]
    )
    session_id = first.headers["x-session-id"]
    history = [
        {"role": "system", "content": "ignored: the agent has its own prompt"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "You said: one"},
        {"role": "user", "content": "two"},
    ]
    second = client.chat.completions.create(
        model=agent.slug, messages=history, extra_headers={"X-Session-Id": session_id}
    )
    assert (second.model_extra or {})["session_id"] == session_id
    assert user_messages(session_id) == ["one", "two"]  # earlier messages are not stored again

    by_user = [
        client.chat.completions.create(
            model=agent.slug, messages=[{"role": "user", "content": text}], user="erin"
        )
        for text in ("three", "four")
    ]
    sessions = {(c.model_extra or {})["session_id"] for c in by_user}
    assert len(sessions) == 1 and session_id not in sessions
    session = Session.objects.get(pk=sessions.pop())
    assert session.external_user == "erin"  # memories are scoped to the end user
    assert user_messages(session.pk) == ["three", "four"]

    fresh = client.chat.completions.create(
        model=agent.slug, messages=[{"role": "user", "content": "five"}]
    )
    assert (fresh.model_extra or {})["session_id"] not in (session_id, str(session.pk))


def test_it_says_a_person_will_join_when_the_agent_hands_off(client, agent):
    completion = client.chat.completions.create(
        model=agent.slug, messages=[{"role": "user", "content": "I want a human please"}]
    )
    assert completion.choices[0].message.content == HANDOFF_NOTICE
    assert completion.choices[0].finish_reason == "stop"
    extra = completion.model_extra or {}
    assert extra["handoff"]["status"] == "open"
    assert "The user asked" in extra["handoff"]["reason"]
    session = Session.objects.get(pk=extra["session_id"])
    assert session.status == SessionStatus.HANDED_OFF

    # While the person has it, a message waits for them (no run) and gets the same notice.
    stream = client.chat.completions.create(
        model=agent.slug,
        messages=[{"role": "user", "content": "are you there?"}],
        stream=True,
        extra_headers={"X-Session-Id": str(session.pk)},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == HANDOFF_NOTICE
    final = (chunks[-1].model_extra or {})["handoff"]
    assert final["id"] == extra["handoff"]["id"]
    assert user_messages(session.pk) == ["I want a human please", "are you there?"]
    assert Run.objects.filter(session=session).count() == 1


def test_it_answers_a_handoff_to_a_team(client, agent):
    """The handoff field is the conversation's handoff shape, its team a slug (a Team object
    in it failed the JSON encoding after the 200 went out)."""
    agent.handoff_team = Team.objects.create(slug="billing", name="Billing desk")
    agent.save()
    completion = client.chat.completions.create(
        model=agent.slug, messages=[{"role": "user", "content": "I want a human please"}]
    )
    extra = completion.model_extra or {}
    assert completion.choices[0].message.content == HANDOFF_NOTICE
    handoff = Handoff.objects.select_related("team", "claimed_by").get(pk=extra["handoff"]["id"])
    assert extra["handoff"] == handoff_serialise(handoff)
    assert extra["handoff"]["team"] == "billing"
    # Streamed: while the person has the conversation, and a run that hands off as it streams.
    waiting = client.chat.completions.create(
        model=agent.slug,
        messages=[{"role": "user", "content": "still there?"}],
        stream=True,
        extra_headers={"X-Session-Id": extra["session_id"]},
    )
    fresh = client.chat.completions.create(
        model=agent.slug, messages=[{"role": "user", "content": "operator please"}], stream=True
    )
    for stream in (waiting, fresh):
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.endswith(HANDOFF_NOTICE)
        assert (chunks[-1].model_extra or {})["handoff"]["team"] == "billing"


def test_it_streams_the_handoff_notice(client, agent):
    chunks = list(
        client.chat.completions.create(
            model=agent.slug,
            messages=[{"role": "user", "content": "operator please"}],
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.endswith(HANDOFF_NOTICE)
    assert (chunks[-1].model_extra or {})["handoff"]["status"] == "open"


def test_it_reports_a_failed_run_as_an_error_and_asks_not_to_retry(
    client, agent, devmodel, model_name
):
    devmodel.script(model_name, faults=[{"status": 401}, {"status": 401}])
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(
            model=agent.slug, messages=[{"role": "user", "content": "hi"}]
        )
    error = raised.value
    assert error.status_code == 502
    assert error.code == "run_failed" and "auth" in error.message
    assert error.response.headers["x-should-retry"] == "false"
    run = Run.objects.get(session__agent=agent)
    assert run.status == RunStatus.FAILED

    devmodel.script(model_name, faults=[{"status": 401}, {"status": 401}])
    retrying = openai.OpenAI(base_url=client.base_url, api_key=client.api_key, max_retries=2)
    with pytest.raises(openai.APIStatusError):
        retrying.chat.completions.create(
            model=agent.slug, messages=[{"role": "user", "content": "again"}]
        )
    assert Message.objects.filter(content="again").count() == 1  # the client did not retry


def test_it_sends_a_failure_mid_stream_as_an_error_event(client, agent, devmodel, model_name):
    devmodel.script(model_name, faults=[{"status": 401}, {"status": 401}])
    stream = client.chat.completions.create(
        model=agent.slug, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match="run failed"):
        list(stream)


def test_it_refuses_a_second_message_while_a_run_is_active(client, agent, devmodel, model_name):
    devmodel.script(model_name, latency=3)
    answers: list[str] = []

    def slow() -> None:
        completion = client.chat.completions.create(
            model=agent.slug, messages=[{"role": "user", "content": "slow"}], user="zoe"
        )
        answers.append(completion.choices[0].message.content or "")

    thread = threading.Thread(target=slow)
    thread.start()
    started = until(
        lambda: Run.objects.filter(session__external_user="zoe").first(),
        seconds=10,
        message="zoe's first run never started",
    )
    with pytest.raises(openai.ConflictError) as raised:
        client.chat.completions.create(
            model=agent.slug, messages=[{"role": "user", "content": "meanwhile"}], user="zoe"
        )
    assert raised.value.code == "session_busy"
    thread.join(30)
    assert answers == ["You said: slow"]
    assert user_messages(started.session_id) == ["slow"]


def test_it_lists_the_agents_the_key_may_use(client, agent, web, charlie):
    other = AgentFactory()
    ids = [m.id for m in client.models.list()]
    assert ids == sorted([agent.slug, other.slug])
    assert client.models.retrieve(agent.slug).id == agent.slug
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-agent")

    viewer = openai.OpenAI(
        base_url=f"http://{web}/v1",
        api_key=api_key_create(user=charlie, name="v")[1],
        max_retries=0,
    )
    assert list(viewer.models.list()) == []
    with pytest.raises(openai.PermissionDeniedError):
        viewer.chat.completions.create(
            model=agent.slug, messages=[{"role": "user", "content": "hi"}]
        )


def test_it_refuses_missing_and_invalid_keys(web, agent):
    for api_key in ("ao_not-a-real-key", "sk-something-else"):
        client = openai.OpenAI(base_url=f"http://{web}/v1", api_key=api_key, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as raised:
            client.chat.completions.create(
                model=agent.slug, messages=[{"role": "user", "content": "hi"}]
            )
        assert raised.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            client.models.list()
    response = httpx.post(
        f"http://{web}/v1/chat/completions",
        json={"model": agent.slug, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "missing_api_key"
    assert not Message.objects.exists()


def test_it_answers_404_for_an_unknown_model(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(
            model="no-such-agent", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.code == "model_not_found"
    assert raised.value.param == "model"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "{agent}", "messages": []}, "messages"),
        ({"model": "{agent}", "messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"model": "{agent}", "messages": [{"role": "user", "content": "a\u0000b"}]}, "messages"),
        (
            {
                "model": "{agent}",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ],
            },
            "messages",
        ),
        (
            {"model": "{agent}", "messages": [{"role": "user", "content": "hi"}], "stream": 1},
            "stream",
        ),
    ],
)
def test_it_names_the_field_of_a_bad_request(web, key, agent, body, param):
    if body.get("model") == "{agent}":
        body["model"] = agent.slug
    response = httpx.post(
        f"http://{web}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert not Message.objects.exists()


def test_it_refuses_an_unknown_session_id(client, agent):
    other = AgentFactory()
    session = Session.objects.create(agent=other)
    for session_id in (str(session.pk), "not-a-uuid"):
        with pytest.raises(openai.NotFoundError) as raised:
            client.chat.completions.create(
                model=agent.slug,
                messages=[{"role": "user", "content": "hi"}],
                extra_headers={"X-Session-Id": session_id},
            )
        assert raised.value.code == "session_not_found"


def test_it_waits_for_many_runs_without_a_thread_each(client, agent, devmodel, model_name, web):
    devmodel.script(model_name, latency=0.5)  # the runs are done one after another
    port = int(web.rsplit(":", 1)[1])
    server = next(
        p
        for p in psutil.process_iter(["cmdline"])
        if "uvicorn" in " ".join(p.info["cmdline"] or []) and str(port) in p.info["cmdline"]
    )
    before = server.num_threads()
    results: list[str] = []
    peak = [before]

    def ask(n: int) -> None:
        completion = client.chat.completions.create(
            model=agent.slug, messages=[{"role": "user", "content": f"number {n}"}]
        )
        results.append(completion.choices[0].message.content or "")

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        peak.append(server.num_threads())
        threading.Event().wait(0.1)  # on purpose: samples the thread count while they run
    assert sorted(results) == sorted(f"You said: number {n}" for n in range(16))
    # The server's shared pools (database calls, the live sender) only; not one per request.
    assert max(peak) - before < 16, (before, max(peak))
    for run in Run.objects.filter(session__agent=agent):
        wait_for_run(run.pk)
