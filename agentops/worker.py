"""The RQ worker class AgentOps runs (`rqworker --worker-class agentops.worker.Worker`).

RQ's forking Worker runs each job in a fresh child: a crashing or killed run never takes
the worker down, and a stuck one can be killed alone. The price is that everything a job
loads lazily is loaded again in every child: measured (bench/step_overhead.py), the openai
client's lazy imports, pydantic schemas and TLS context cost ~70 ms per run. So the parent
loads the heavy, fork-safe parts once before it starts forking, by running one complete
streamed completion against an in-memory transport (no socket is opened).
"""

from __future__ import annotations

import gc
import json
from typing import Any

import httpx2
import openai
from channels.layers import get_channel_layer
from django.db import connections
from rq.worker import Worker as RQWorker

_WARM_UP_STREAM = [
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "warm"}}]},
    {
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_0",
                            "type": "function",
                            "function": {"name": "warm", "arguments": "{}"},
                        }
                    ]
                },
                "finish_reason": "tool_calls",
            }
        ]
    },
    {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}},
]


def _warm_up_response(request: httpx2.Request) -> httpx2.Response:
    base = {"id": "warm-up", "object": "chat.completion.chunk", "created": 0, "model": "warm"}
    body = "".join(f"data: {json.dumps(base | chunk)}\n\n" for chunk in _WARM_UP_STREAM)
    return httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=body + "data: [DONE]\n\n"
    )


def warm_up() -> None:
    from agentops.runtime import loop  # noqa: F401
    from agentops.runtime.context import count_tokens
    from agentops.runtime.model_client import stream_reply, tls_context

    count_tokens("warm up the o200k encoding")
    get_channel_layer()  # imports the Redis layer; it connects per event loop, so in the child
    tls_context()
    client = openai.OpenAI(
        api_key="warm-up",
        base_url="http://warm-up.invalid/v1",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=httpx2.MockTransport(_warm_up_response)),
    )
    with client:
        stream_reply(
            client,
            {
                "model": "warm",
                "messages": [{"role": "user", "content": "warm up"}],
                "tools": [{"type": "function", "function": {"name": "warm", "parameters": {}}}],
            },
        )
    connections.close_all()  # a child must not share the parent's database socket
    gc.freeze()  # a child's collections then never walk (and so copy) what it inherited


class Worker(RQWorker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        warm_up()
        return super().work(*args, **kwargs)
