"""The RQ worker class AgentOps runs (`rqworker --worker-class agentops.worker.Worker`).

RQ's forking Worker runs each job in a fresh child: a crashing or killed run never takes
the worker down, and a stuck one can be killed alone. The price is that everything a job
loads lazily is loaded again in every child; measured (bench/step_overhead.py) that cost
~60 ms on the first model call of each run. So the parent loads the heavy, fork-safe parts
once before it starts forking: the openai client library, the token encoding, the runtime.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from rq.worker import Worker as RQWorker


def warm_up() -> None:
    import openai
    from openai.types.chat import ChatCompletionChunk  # noqa: F401  (lazily imported by streams)

    from agentops.runtime import loop  # noqa: F401
    from agentops.runtime.context import count_tokens

    count_tokens("warm up the o200k encoding")
    openai.OpenAI(api_key="warm-up", base_url="http://127.0.0.1:9/v1", max_retries=0).close()
    connections.close_all()  # a child must not share the parent's database socket


class Worker(RQWorker):
    def work(self, *args: Any, **kwargs: Any) -> bool:
        warm_up()
        return super().work(*args, **kwargs)
