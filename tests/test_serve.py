"""The OpenAI-compatible server: real HTTP on loopback over a tiny random model."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest


@pytest.fixture
def server(tiny_folder: Path):  # type: ignore[no-untyped-def]
    from refusalscope.models.handle import ModelHandle
    from refusalscope.serve import make_server

    handle = ModelHandle.load(str(tiny_folder))
    srv = make_server(handle, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield handle, f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _post(url: str, body: object) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_models_lists_the_served_model(server) -> None:  # type: ignore[no-untyped-def]
    handle, base = server
    with urllib.request.urlopen(base + "/v1/models", timeout=10) as r:
        data = json.loads(r.read())
    assert [m["id"] for m in data["data"]] == [handle.name]


def test_chat_completion_matches_local_greedy_generation(server) -> None:  # type: ignore[no-untyped-def]
    from refusalscope.generation import GenerateConfig, generate_batch

    handle, base = server
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    code, reply = _post(base + "/v1/chat/completions",
                        {"model": handle.name, "messages": msgs, "max_tokens": 7})
    assert code == 200 and reply["object"] == "chat.completion"
    text = handle.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    want = generate_batch(handle, [text], GenerateConfig(model="x", max_new_tokens=7))[0]
    assert reply["choices"][0]["message"]["content"] == want["response"]
    assert reply["usage"]["completion_tokens"] == want["new_tokens"] <= 7
    assert reply["usage"]["prompt_tokens"] == want["prompt_tokens"]


def _chat(base: str, **body: object) -> str:
    code, reply = _post(base + "/v1/chat/completions",
                        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 12, **body})
    assert code == 200, reply
    return reply["choices"][0]["message"]["content"]


def _local(handle, seed: int, temperature: float, top_p: float = 1.0) -> str:  # type: ignore[no-untyped-def]
    from refusalscope.generation import GenerateConfig, generate_batch

    text = handle.tokenizer.apply_chat_template([{"role": "user", "content": "hi"}],
                                                tokenize=False, add_generation_prompt=True)
    cfg = GenerateConfig(model="x", max_new_tokens=12, temperature=temperature, top_p=top_p)
    return generate_batch(handle, [text], cfg, seed=seed)[0]["response"]


def test_sampling_honours_seed_and_temperature(server) -> None:  # type: ignore[no-untyped-def]
    """Same seed -> same text; another seed -> another text; both equal local sampling."""
    handle, base = server
    a = _chat(base, temperature=1.5, seed=3)
    assert _chat(base, temperature=1.5, seed=3) == a
    b = _chat(base, temperature=1.5, seed=4)
    assert b != a  # a server ignoring the seed (or the temperature) answers the same twice
    assert a == _local(handle, 3, 1.5) and b == _local(handle, 4, 1.5)
    assert a != _local(handle, 3, 0.0)  # sampled, not greedy


def test_greedy_and_tiny_top_p_equal_local_greedy(server) -> None:  # type: ignore[no-untyped-def]
    """temperature 0 is greedy whatever the seed; top_p ~ 0 keeps only the top token."""
    handle, base = server
    greedy = _local(handle, 0, 0.0)
    assert _chat(base) == _chat(base, temperature=0, seed=9) == greedy
    for seed in (3, 4):
        assert _chat(base, temperature=1.5, top_p=1e-6, seed=seed) == greedy
    assert _chat(base, temperature=1.5, top_p=0.3, seed=3) == _local(handle, 3, 1.5, 0.3)


@pytest.mark.parametrize("body, why", [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": True}, "stream"),
    ([1, 2], "object"),
])
def test_bad_requests_get_400(server, body, why) -> None:  # type: ignore[no-untyped-def]
    _, base = server
    code, reply = _post(base + "/v1/chat/completions", body)
    assert code == 400 and why in reply["error"]["message"]


def test_unknown_route_is_404(server) -> None:  # type: ignore[no-untyped-def]
    _, base = server
    code, reply = _post(base + "/v1/completions", {"prompt": "x"})
    assert code == 404 and "no route" in reply["error"]["message"]
