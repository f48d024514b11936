"""The development model server: fixed latency, many requests at once, their times recorded."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import openai
import pytest

from agentops.devmodel.server import default_latency
from agentops.testing.processes import free_port, wait_http


def _ask(url: str, model: str, text: str) -> str:
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return reply.choices[0].message.content or ""


def test_it_answers_many_requests_at_once_after_the_models_latency(devmodel, model_name):
    devmodel.script(model_name, latency=1.5)
    answers: list[str] = []
    threads = [
        threading.Thread(
            target=lambda i=i: answers.append(_ask(devmodel.url, model_name, f"hi {i}"))
        )
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == sorted(f"You said: hi {i}" for i in range(8))
    requests = devmodel.requests(model_name)
    assert len(requests) == 8
    assert all(r["ended"] - r["at"] >= 1.5 for r in requests)
    # Every request started before any ended: they were all waiting at the same time.
    assert max(r["at"] for r in requests) < min(r["ended"] for r in requests)


def test_it_rejects_a_latency_that_is_not_a_number_of_seconds(devmodel, model_name):
    for bad in (-1, "slow", True):
        with pytest.raises(urllib.error.HTTPError) as error:
            devmodel.script(model_name, latency=bad)
        assert error.value.code == 400
        assert json.loads(error.value.read())["error"]["code"] == "latency"


def test_it_takes_its_default_latency_from_the_command_line(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentops.devmodel.server", "--port", str(port), "--latency", "0.4"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        assert _ask(f"http://127.0.0.1:{port}/v1", "m", "hello") == "You said: hello"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_control/requests?model=m") as r:
            (request,) = json.loads(r.read())["requests"]
        assert request["ended"] - request["at"] >= 0.4
    finally:
        proc.terminate()
        proc.wait(10)


def test_it_reads_its_default_latency_in_milliseconds_from_the_environment(monkeypatch):
    monkeypatch.setenv("DEVMODEL_LATENCY_MS", "2000")
    assert default_latency() == 2.0
    monkeypatch.setenv("DEVMODEL_LATENCY_MS", "two seconds")
    with pytest.raises(SystemExit, match="DEVMODEL_LATENCY_MS must be a number"):
        default_latency()


def _call(call_id: str, name: str = "echo") -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


@pytest.mark.parametrize(
    ("messages", "complaint"),
    [
        ([{"role": "tool", "tool_call_id": "c1", "content": "x"}], "must be a response"),
        (
            [
                {"role": "assistant", "content": "", "tool_calls": [_call("c1")]},
                {"role": "tool", "tool_call_id": "c2", "content": "x"},
            ],
            "must be a response",
        ),
        (
            [
                {"role": "assistant", "content": "", "tool_calls": [_call("c1"), _call("c2")]},
                {"role": "tool", "tool_call_id": "c1", "content": "x"},
                {"role": "user", "content": "and?"},
            ],
            "Unanswered: c2",
        ),
    ],
)
def test_it_refuses_tool_messages_that_do_not_pair_up_as_the_openai_api_does(
    devmodel, model_name, messages, complaint
):
    client = openai.OpenAI(base_url=devmodel.url, api_key="none", max_retries=0)
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model=model_name, messages=[{"role": "user", "content": "hi"}, *messages]
        )
    assert complaint in str(error.value)


def test_it_makes_the_calls_of_a_script_one_after_the_other(devmodel, model_name):
    client = openai.OpenAI(base_url=devmodel.url, api_key="none", max_retries=0)
    messages: list = [{"role": "user", "content": 'call a {"x": 1}\ncall b {"y": 2}'}]
    for name, arguments in (("a", '{"x": 1}'), ("b", '{"y": 2}')):
        reply = client.chat.completions.create(model=model_name, messages=messages)
        (call,) = reply.choices[0].message.tool_calls or []
        assert (call.function.name, call.function.arguments) == (name, arguments)
        messages += [
            {"role": "assistant", "content": "", "tool_calls": [_call(call.id, name)]},
            {"role": "tool", "tool_call_id": call.id, "content": f"done {name}"},
        ]
    reply = client.chat.completions.create(model=model_name, messages=messages)
    assert reply.choices[0].message.content == "Tool results: done a ; done b"
