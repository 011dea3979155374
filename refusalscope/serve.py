"""A minimal OpenAI-compatible HTTP server over one local model (stdlib only).

Endpoints: `GET /v1/models` and `POST /v1/chat/completions` (`messages`, `max_tokens`,
`temperature`, `top_p`, `seed`; no streaming, `n` = 1). Messages go through the model's chat
template. Requests are served by threads but generate one at a time (a lock around the model),
so concurrent clients queue rather than thrash the CPU. It binds to loopback by default: it has
no authentication and must not be exposed.

Example:
    server = make_server(ModelHandle.load("smollm2-135m"), port=8000)
    server.serve_forever()
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from refusalscope.errors import UserError

log = logging.getLogger(__name__)

MAX_TOKENS_DEFAULT = 256
MAX_TOKENS_LIMIT = 4096
MAX_BODY = 4 << 20  # bytes


class RequestError(Exception):
    """A bad request: answered with HTTP 400 and an OpenAI-style error body."""


def render_messages(handle: Any, messages: Any) -> str:
    """The model input for a chat: the chat template, or the handle's fallback for one turn."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list")
    clean = []
    for m in messages:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise RequestError("each message needs a role (system|user|assistant) and text content")
        clean.append({"role": m["role"], "content": m["content"]})
    if handle.has_chat_template:
        return handle.tokenizer.apply_chat_template(clean, tokenize=False,
                                                    add_generation_prompt=True)
    system = [m["content"] for m in clean if m["role"] == "system"]
    users = [m for m in clean if m["role"] != "system"]
    if len(users) != 1 or users[0]["role"] != "user":
        raise RequestError("this model has no chat template: send one user message")
    return handle.format_prompt(users[0]["content"], system[0] if system else None)


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise RequestError(f"'{key}' must be a number in [{lo}, {hi}]")
    return value


def complete(handle: Any, body: dict[str, Any]) -> dict[str, Any]:
    """Answer one chat-completions request body with an OpenAI-style response dict."""
    from refusalscope.generation import GenerateConfig, generate_batch

    text = render_messages(handle, body.get("messages"))
    max_tokens = int(_number(body, "max_tokens", MAX_TOKENS_DEFAULT, 1, MAX_TOKENS_LIMIT))
    temperature = float(_number(body, "temperature", 0.0, 0.0, 2.0))
    top_p = float(_number(body, "top_p", 1.0, 1e-6, 1.0))
    seed = int(_number(body, "seed", 0, 0, 2**32 - 1))
    if body.get("stream"):
        raise RequestError("streaming is not supported")
    cfg = GenerateConfig(model=handle.name, max_new_tokens=max_tokens, temperature=temperature,
                         top_p=top_p)
    row = generate_batch(handle, [text], cfg, seed=seed)[0]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": handle.name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": row["response"]},
                     "finish_reason": "stop" if row["finish_reason"] == "eos" else "length"}],
        "usage": {"prompt_tokens": row["prompt_tokens"], "completion_tokens": row["new_tokens"],
                  "total_tokens": row["prompt_tokens"] + row["new_tokens"]},
    }


def _handler(handle: Any, lock: threading.Lock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
            log.info("%s %s", self.address_string(), format % args)

        def _send(self, code: int, obj: dict[str, Any]) -> None:
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code: int, message: str, kind: str = "invalid_request_error") -> None:
            self._send(code, {"error": {"message": message, "type": kind}})

        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [
                    {"id": handle.name, "object": "model", "owned_by": "refusalscope"}]})
            else:
                self._error(404, f"no route GET {self.path}")

        def do_POST(self) -> None:  # noqa: N802 (stdlib name)
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route POST {self.path}")
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if not 0 < length <= MAX_BODY:
                    raise RequestError(f"body must be 1 to {MAX_BODY} bytes of JSON")
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise RequestError("body must be a JSON object")
                with lock:
                    reply = complete(handle, body)
            except (RequestError, UserError, ValueError) as e:
                self._error(400, str(e)[:300])
                return
            except Exception as e:  # keep serving; the client sees a 500
                log.exception("generation failed")
                self._error(500, f"{type(e).__name__}", "server_error")
                return
            self._send(200, reply)

    return Handler


def make_server(handle: Any, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """A server bound to `host:port` (port 0 picks a free one: see `server.server_address`)."""
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: this server has no authentication", host)
    server = ThreadingHTTPServer((host, port), _handler(handle, threading.Lock()))
    server.daemon_threads = True
    return server
