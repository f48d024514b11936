"""A development model server speaking the OpenAI chat-completions protocol over real HTTP.

Deterministic, scripted behaviour (driven by the latest user message):

- ``call NAME {json}``      -> a tool call to NAME with those arguments (any name, any JSON)
- lines of ``call NAME {json}`` -> those calls one after the other (the next once the previous
                              has its result), then an answer quoting every result since the
                              user's message
- ``remember TEXT``         -> ``remember(text=TEXT, kind="fact")``
- ``recall QUERY``          -> ``recall(query=QUERY, k=5)``
- ``handoff REASON`` / a message asking for a human -> ``handoff_to_human(reason=...)``
- ``loop``                  -> calls ``echo`` with the same arguments forever
- ``chain N TOOL [SECONDS]`` -> calls TOOL N times in a row, then answers; the arguments fit the
                              TOOL's schema: ``seconds`` (default 0.2) and ``label`` (k) where it has
                              them, k for its other required strings and numbers
- a ``transfer_to_*`` tool whose description shares a word with the message (the first five
  letters of words of five or more) -> a call of it (a triage agent passing a refund on)
- a summarisation request (system prompt starting "Summarize") -> a deterministic summary
- a judge (system prompt starting "You are a judge") -> a JSON verdict ``{"pass", "score",
  "reason"}``: pass when the text after ``REFERENCE:`` appears in the text after ``ANSWER:``
  in the user message; a rubric containing ``[[malformed]]`` gets prose instead of JSON, and
  one containing ``[[invalid]]`` gets JSON of the wrong shape
- a guardrail classifier (system prompt starting "You are a guardrail classifier") -> a JSON
  verdict ``{"pass", "reason"}``: fails a text containing "ignore previous instructions" or
  ``[[unsafe]]``; ``[[malformed]]`` / ``[[invalid]]`` in its rule as for a judge
- a router (system prompt starting "You are a router", lines ``- AGENT: DESCRIPTION``) -> a
  JSON verdict ``{"agent", "reason"}``: the first agent whose description shares a word with
  the message (as for transfers), else "none"; ``[[malformed]]`` in the prompt gets prose,
  ``[[invalid]]`` names an agent that is not listed
- a system prompt containing "Reply in capitals." -> the usual answer, upper-cased (two agent
  versions that answer differently, for experiments)
- after tool results        -> an answer quoting the tool results
- anything else             -> "You said: ..." streamed word by word

Fault injection, per model name (tests use a unique model name each) through
``POST /_control/script`` ``{"model": m, "faults": [...], "context_limit": n, "api_key": k}``;
each request for m pops the next fault: ``{"status": 429, "retry_after": 1}``,
``{"status": 500}``, ``{"status": 401}``, ``{"status": 400, "code": "context_length_exceeded"}``,
``{"delay": seconds}``, ``{"stream_delay": seconds}``, ``{"malformed_tool_json": true}``,
``{"unknown_tool": true}``, ``{"drop_connection": true}``, ``{"garbage_stream": true}``,
``{"stamp": true}`` (each streamed word is replaced by the time it was sent, for latency
benches). A message containing
``[[fault:429]]`` (or 500, slow, malformed) injects one fault by hand.
A conversation the OpenAI API would refuse is answered 400 as it would be: a tool message
that answers no tool call of the assistant message before it, or a tool call left unanswered.
``GET /_control/requests?model=m`` lists what the server received, each request with the
times it started and ended (``at``, ``ended``), so a test can see requests overlap.

Latency: every chat completion waits a fixed time before it answers, like a real model
thinking: ``--latency SECONDS`` (or ``DEVMODEL_LATENCY_MS``) for all models, ``"latency":
seconds`` in ``/_control/script`` for one. Requests are served each in a thread of its own,
so many wait at once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

_lock = threading.Lock()
_scripts: dict[str, dict[str, Any]] = {}
_requests: dict[str, list[dict[str, Any]]] = {}
# Seconds every chat completion waits before answering, unless its model's script says otherwise.
_latency = {"default": 0.0}

CHAIN_RE = re.compile(r"^chain (\d+) (\w+)(?: ([0-9.]+))?$", re.I)
CALL_RE = re.compile(r"^\s*call\s+([^\s{]+)\s*(.*)$", re.S | re.I)
HANDOFF_RE = re.compile(r"\b(handoff|hand off|human|operator|agent please)\b", re.I)
INLINE_FAULT_RE = re.compile(r"\[\[fault:(\w+)\]\]")


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


def _approx_tokens(messages: list[dict[str, Any]]) -> int:
    return sum(len(json.dumps(m)) for m in messages) // 4


def _content_text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content)


def embed_text(text: str, dimensions: int) -> list[float]:
    """Deterministic bag-of-words hashing embedding, L2-normalised."""
    vector = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        index = int.from_bytes(digest[:4], "little") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def _chain_arguments(spec: dict[str, Any] | None, k: int, seconds: float) -> dict[str, Any]:
    """Arguments for the k-th call of a chain that the tool's JSON schema accepts."""
    if spec is None:  # a tool the request did not offer: the runtime tells the model so
        return {"label": str(k), "seconds": seconds}
    schema = spec.get("parameters") or {}
    required = set(schema.get("required") or [])
    args: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") if isinstance(prop, dict) else None
        if name == "seconds" and kind in ("number", "integer", None):
            args[name] = round(seconds) if kind == "integer" else seconds
        elif (name == "label" and kind in ("string", None)) or (
            name in required and kind == "string"
        ):
            args[name] = str(k)
        elif name in required and kind in ("number", "integer"):
            args[name] = k
        elif name in required and kind == "boolean":
            args[name] = False
    return args


def tool_pairing_error(messages: list[dict[str, Any]]) -> str:
    """Why the OpenAI API would refuse this conversation's tool messages, or ""."""
    waiting: list[str] = []
    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in waiting:
                return (
                    f"Invalid parameter: messages with role 'tool' must be a response to a "
                    f"preceding message with 'tool_calls' (messages[{index}], "
                    f"tool_call_id {call_id!r})."
                )
            waiting.remove(call_id)
            continue
        if waiting:
            return (
                "An assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'. Unanswered: {', '.join(waiting)} "
                f"(before messages[{index}])."
            )
        if role == "assistant":
            waiting = [str(c.get("id")) for c in message.get("tool_calls") or []]
    if waiting:
        return f"The tool calls {', '.join(waiting)} have no tool messages answering them."
    return ""


def plan_reply(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], fault: dict[str, Any]
) -> dict:
    """Decide the assistant's reply: {"content": str} or {"tool_calls": [...]}."""
    system = _content_text(messages[0]) if messages and messages[0].get("role") == "system" else ""
    if system.startswith("Summarize"):
        body = [f"{m['role']}: {_content_text(m)[:60]}" for m in messages[1:] if _content_text(m)]
        return {"content": "Summary: " + " | ".join(body)[:1500]}
    if system.startswith("You are a judge"):
        return {"content": judge_verdict(system, _content_text(messages[-1]))}
    if system.startswith("You are a guardrail classifier"):
        return {"content": classifier_verdict(system, _content_text(messages[-1]))}
    if system.startswith("You are a router"):
        return {"content": route_verdict(system, _content_text(messages[-1]))}
    reply = _plan_reply(messages, tools, fault)
    if "Reply in capitals." in system and "content" in reply:
        reply["content"] = reply["content"].upper()
    return reply


def judge_verdict(rubric: str, case: str) -> str:
    """A deterministic verdict: the answer passes when it contains the reference."""
    if "[[malformed]]" in rubric:
        return "The answer looks fine to me, I would give it a pass."
    if "[[invalid]]" in rubric:
        return json.dumps({"pass": "maybe", "score": 7})
    reference = case.partition("REFERENCE:")[2].partition("ANSWER:")[0].strip()
    answer = case.partition("ANSWER:")[2].strip()
    passed = bool(reference) and reference in answer
    reason = "the answer contains the reference" if passed else "the reference is missing"
    return json.dumps({"pass": passed, "score": 1.0 if passed else 0.0, "reason": reason})


def transfer_for(text: str, tools: list[dict[str, Any]]) -> str:
    """A `transfer_to_*` tool whose description shares a word with the text (the first five
    letters of words of five or more), else ""."""
    said = {w[:5] for w in re.findall(r"[a-z]{5,}", text.lower())}
    for tool in tools:
        function = tool.get("function") or {}
        name = str(function.get("name") or "")
        if not name.startswith("transfer_to_"):
            continue
        about = str(function.get("description") or "").lower().rsplit(": ", 1)[-1]
        if said & {w[:5] for w in re.findall(r"[a-z]{5,}", about)}:
            return name
    return ""


def classifier_verdict(rule: str, text: str) -> str:
    """A deterministic verdict: a text asking to ignore instructions, or marked unsafe, fails."""
    if "[[malformed]]" in rule:
        return "This text seems fine to me."
    if "[[invalid]]" in rule:
        return json.dumps({"pass": "perhaps"})
    lowered = text.lower()
    unsafe = "ignore previous instructions" in lowered or "[[unsafe]]" in lowered
    reason = "it asks to ignore the instructions" if unsafe else "nothing against the rule"
    return json.dumps({"pass": not unsafe, "reason": reason})


def route_verdict(prompt: str, text: str) -> str:
    """A deterministic routing verdict: the first listed agent whose description shares a
    word with the message (the first five letters of words of five or more), else "none"."""
    if "[[malformed]]" in prompt:
        return "I think billing should take this one."
    if "[[invalid]]" in prompt:
        return json.dumps({"agent": "no-such-agent", "reason": "made up"})
    message = text.partition("MESSAGE:")[2] or text
    said = {w[:5] for w in re.findall(r"[a-z]{5,}", message.lower())}
    for slug, about in re.findall(r"^- ([\w-]+): (.*)$", prompt, re.M):
        if said & {w[:5] for w in re.findall(r"[a-z]{5,}", about.lower())}:
            return json.dumps({"agent": slug, "reason": "the message is about its work"})
    return json.dumps({"agent": "none", "reason": "no agent fits better"})


def _plan_reply(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], fault: dict[str, Any]
) -> dict:
    last = messages[-1] if messages else {"role": "user", "content": ""}
    user_text = next((_content_text(m) for m in reversed(messages) if m.get("role") == "user"), "")
    if user_text.strip().lower() == "loop":
        return {
            "tool_calls": [
                {
                    "id": f"call_{uuid.uuid4().hex[:12]}",
                    "name": "echo",
                    "arguments": json.dumps({"text": "again"}),
                }
            ]
        }
    chain = CHAIN_RE.match(user_text.strip())
    if chain:
        done = 0
        for m in reversed(messages):
            if m.get("role") == "user":
                break
            done += m.get("role") == "tool"
        if done < int(chain.group(1)):
            spec = next(
                (
                    t.get("function", {})
                    for t in tools
                    if t.get("function", {}).get("name") == chain.group(2)
                ),
                None,
            )
            args = _chain_arguments(spec, done + 1, float(chain.group(3) or 0.2))
            return {
                "tool_calls": [
                    {
                        "id": f"call_{uuid.uuid4().hex[:12]}",
                        "name": chain.group(2),
                        "arguments": json.dumps(args),
                    }
                ]
            }
        return {"content": f"Chain of {done} done."}
    script = [CALL_RE.match(line) for line in user_text.strip().splitlines()]
    if len(script) > 1 and all(script):
        results = []
        for m in reversed(messages):
            if m.get("role") == "user":
                break
            if m.get("role") == "tool":
                results.append(_content_text(m))
        if len(results) < len(script):
            step = script[len(results)]
            assert step is not None
            return {
                "tool_calls": [
                    {
                        "id": f"call_{uuid.uuid4().hex[:12]}",
                        "name": step.group(1),
                        "arguments": step.group(2).strip() or "{}",
                    }
                ]
            }
        return {"content": "Tool results: " + " ; ".join(reversed(results))}
    if last.get("role") == "tool":
        results = []
        for m in reversed(messages):
            if m.get("role") != "tool":
                break
            results.append(_content_text(m))
        return {"content": "Tool results: " + " ; ".join(reversed(results))}
    tool_names = {t.get("function", {}).get("name") for t in tools}

    def call(name: str, arguments: str) -> dict:
        if fault.get("unknown_tool"):
            name = "no_such_tool"
        if fault.get("malformed_tool_json"):
            arguments = arguments[:-1] + ',"oops": }'
        return {
            "tool_calls": [
                {"id": f"call_{uuid.uuid4().hex[:12]}", "name": name, "arguments": arguments}
            ]
        }

    call_match = CALL_RE.match(user_text)
    if call_match:
        return call(call_match.group(1), call_match.group(2).strip() or "{}")
    lowered = user_text.lower().strip()
    if lowered.startswith("remember ") and "remember" in tool_names:
        return call("remember", json.dumps({"text": user_text.strip()[9:], "kind": "fact"}))
    if lowered.startswith("recall ") and "recall" in tool_names:
        return call("recall", json.dumps({"query": user_text.strip()[7:], "k": 5}))
    transfer = transfer_for(user_text, tools)
    if transfer:
        return call(transfer, json.dumps({"reason": f"The user asked: {user_text[:200]}"}))
    if HANDOFF_RE.search(user_text) and "handoff_to_human" in tool_names:
        return call(
            "handoff_to_human", json.dumps({"reason": f"The user asked: {user_text[:200]}"})
        )
    context_bits = [
        _content_text(m)
        for m in messages
        if m.get("role") == "system" and "Relevant memories" in _content_text(m)
    ]
    reply = f"You said: {user_text}"
    if context_bits:
        reply += " (I remember: " + context_bits[0].split("\n", 1)[-1][:300] + ")"
    return {"content": reply}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AgentOpsDevModel/1"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None = None, **headers: str) -> None:
        kind = {401: "authentication_error", 429: "rate_limit_error"}.get(
            status, "invalid_request_error"
        )
        if status >= 500:
            kind = "server_error"
        self._json(status, {"error": {"message": message, "type": kind, "code": code}}, headers)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/_control/requests":
            model = parse_qs(url.query).get("model", [""])[0]
            with _lock:
                self._json(200, {"requests": _requests.get(model, [])})
        elif url.path in ("/v1/models", "/models"):
            self._json(200, {"object": "list", "data": [{"id": "devmodel", "object": "model"}]})
        elif url.path == "/healthz":
            self._json(200, {"ok": True})
        else:
            self._error(404, f"No route {url.path}")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        try:
            body = self._body()
        except json.JSONDecodeError:
            self._error(400, "Body is not JSON")
            return
        if url.path == "/_control/script":
            latency = body.get("latency")
            if latency is not None and (
                isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0
            ):
                self._error(400, "latency must be a number of seconds, 0 or more", "latency")
                return
            with _lock:
                _scripts[body["model"]] = {
                    "faults": list(body.get("faults", [])),
                    "context_limit": body.get("context_limit"),
                    "api_key": body.get("api_key"),
                    "latency": body.get("latency"),
                }
                _requests.pop(body["model"], None)
            self._json(200, {"ok": True})
        elif url.path in ("/v1/chat/completions", "/chat/completions"):
            self._chat(body)
        elif url.path in ("/v1/embeddings", "/embeddings"):
            inputs = body.get("input")
            inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
            dims = int(body.get("dimensions") or 256)
            data = [
                {"object": "embedding", "index": i, "embedding": embed_text(str(text), dims)}
                for i, text in enumerate(inputs)
            ]
            tokens = sum(len(str(t).split()) for t in inputs)
            self._json(
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model", "devmodel"),
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                },
            )
        else:
            self._error(404, f"No route {url.path}")

    def _chat(self, body: dict[str, Any]) -> None:
        model = str(body.get("model", "devmodel"))
        messages = body.get("messages") or []
        tools = body.get("tools") or []
        record: dict[str, Any] = {
            "messages": len(messages),
            "at": time.time(),
            "ended": None,
            "last": messages[-1] if messages else None,
            "transcript": [[m.get("role"), _content_text(m)] for m in messages],
            "body": body,  # the request as received, for tests that check what was sent
        }
        with _lock:
            script = _scripts.get(model, {})
            fault = script["faults"].pop(0) if script.get("faults") else {}
            record["fault"] = fault
            _requests.setdefault(model, []).append(record)
        try:
            self._answer(body, model, messages, tools, script, fault)
        finally:
            with _lock:
                record["ended"] = time.time()

    def _answer(
        self,
        body: dict[str, Any],
        model: str,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        script: dict[str, Any],
        fault: dict[str, Any],
    ) -> None:
        user_text = next(
            (_content_text(m) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        inline = (
            INLINE_FAULT_RE.search(user_text)
            if messages and messages[-1].get("role") == "user"
            else None
        )
        if inline and not fault:
            inline_faults: dict[str, dict[str, Any]] = {
                "429": {"status": 429, "retry_after": 1},
                "500": {"status": 500},
                "slow": {"stream_delay": 0.2},
                "malformed": {"malformed_tool_json": True},
            }
            fault = inline_faults.get(inline.group(1), {})
        expected_key = script.get("api_key")
        auth = self.headers.get("Authorization", "")
        if expected_key and auth != f"Bearer {expected_key}":
            self._error(401, "Incorrect API key provided.", "invalid_api_key")
            return
        latency = script.get("latency")
        latency = _latency["default"] if latency is None else float(latency)
        if latency > 0:
            time.sleep(latency)
        if fault.get("delay"):
            time.sleep(float(fault["delay"]))
        if fault.get("drop_connection"):
            self.close_connection = True
            self.connection.shutdown(2)
            return
        status = fault.get("status")
        if status:
            headers = {"Retry-After": str(fault["retry_after"])} if "retry_after" in fault else {}
            code = fault.get("code")
            error_text = (
                "maximum context length exceeded"
                if code == "context_length_exceeded"
                else f"Injected {status}"
            )
            self._error(int(status), error_text, code, **headers)
            return
        pairing = tool_pairing_error(messages)
        if pairing:
            self._error(400, pairing, "invalid_tool_messages")
            return
        limit = script.get("context_limit")
        prompt_tokens = _approx_tokens(messages)
        if limit and prompt_tokens > limit:
            self._error(
                400,
                f"This model's maximum context length is {limit} tokens; your messages were {prompt_tokens}.",
                "context_length_exceeded",
            )
            return
        if fault.get("garbage_stream") and body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(b"data: {this is not json\n\n")
            self.wfile.flush()
            return
        reply = plan_reply(messages, tools, fault)
        completion_tokens = max(
            1, len(_words(reply.get("content", ""))) + 5 * len(reply.get("tool_calls", []))
        )
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        cid = f"chatcmpl-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        if body.get("stream"):
            self._stream(
                cid,
                created,
                model,
                reply,
                usage,
                float(fault.get("stream_delay") or 0),
                bool((body.get("stream_options") or {}).get("include_usage")),
                stamp=bool(fault.get("stamp")),
            )
            return
        message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
        if reply.get("tool_calls"):
            message["tool_calls"] = [
                {
                    "id": c["id"],
                    "type": "function",
                    "function": {"name": c["name"], "arguments": c["arguments"]},
                }
                for c in reply["tool_calls"]
            ]
        finish = "tool_calls" if reply.get("tool_calls") else "stop"
        self._json(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            },
        )

    def _stream(
        self,
        cid: str,
        created: int,
        model: str,
        reply: dict,
        usage: dict,
        delay: float,
        include_usage: bool,
        *,
        stamp: bool = False,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(delta: dict, finish: str | None = None, with_usage: bool = False) -> None:
            payload: dict[str, Any] = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if with_usage:
                payload["choices"] = []
                payload["usage"] = usage
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        try:
            chunk({"role": "assistant", "content": ""})
            if reply.get("tool_calls"):
                for index, call in enumerate(reply["tool_calls"]):
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": call["name"], "arguments": ""},
                                }
                            ]
                        }
                    )
                    args = call["arguments"]
                    for start in range(0, len(args), 16):
                        if delay:
                            time.sleep(delay)
                        chunk(
                            {
                                "tool_calls": [
                                    {
                                        "index": index,
                                        "function": {"arguments": args[start : start + 16]},
                                    }
                                ]
                            }
                        )
                chunk({}, "tool_calls")
            else:
                for word in _words(reply.get("content") or ""):
                    if delay:
                        time.sleep(delay)
                    chunk({"content": f"{time.time():.6f} " if stamp else word})
                chunk({}, "stop")
            if include_usage:
                chunk({}, None, with_usage=True)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 makes a burst of connections wait for SYN retries.
    request_queue_size = 1024


def serve(host: str = "127.0.0.1", port: int = 8765, *, latency: float | None = None) -> Server:
    if latency is not None:
        _latency["default"] = latency
    return Server((host, port), Handler)


def default_latency() -> float:
    raw = os.environ.get("DEVMODEL_LATENCY_MS", "0").strip() or "0"
    try:
        milliseconds = float(raw)
    except ValueError:
        raise SystemExit(
            f"DEVMODEL_LATENCY_MS must be a number of milliseconds, not {raw!r}"
        ) from None
    if milliseconds < 0:
        raise SystemExit(f"DEVMODEL_LATENCY_MS must not be negative, not {raw!r}")
    return milliseconds / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description="AgentOps development model server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--latency",
        type=float,
        default=None,
        help="seconds every chat completion waits before answering (default: DEVMODEL_LATENCY_MS / 1000)",
    )
    args = parser.parse_args()
    latency = default_latency() if args.latency is None else args.latency
    if latency < 0:
        parser.error("--latency must not be negative")
    server = serve(args.host, args.port, latency=latency)
    print(f"devmodel listening on http://{args.host}:{server.server_address[1]}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
