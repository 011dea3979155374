"""`refusalscope generate` through the CLI on a tiny saved model and a prompt file."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.fileio import read_jsonl

runner = CliRunner()


def _one_line_error(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_generate_writes_run(tiny_folder, prompt_file, tmp_path):
    res = runner.invoke(app, ["generate", "--model", str(tiny_folder), "--prompts", str(prompt_file),
                              "--n", "4", "--max-new-tokens", "5", "--batch-size", "2"])
    assert res.exit_code == 0, res.output
    run_dir = tmp_path / "artifacts" / "runs"
    (run,) = list(run_dir.iterdir())
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "success" and manifest["config"]["n"] == 4
    assert manifest["content_warning"]
    rows = read_jsonl(run / "generations.jsonl")
    assert sorted(r["id"] for r in rows) == ["q0", "q1", "q2", "q3"]
    assert all(r["new_tokens"] <= 5 and r["finish_reason"] in ("eos", "length") for r in rows)
    # Resume of a finished run does nothing and keeps the file as it was.
    before = (run / "generations.jsonl").read_bytes()
    res = runner.invoke(app, ["generate", "--resume", str(run)])
    assert res.exit_code == 0, res.output
    assert (run / "generations.jsonl").read_bytes() == before


@pytest.mark.parametrize("args, needle", [
    (["--model", "no-such-model"], "unknown model"),
    (["--model", "smollm2-135m", "--n", "0"], "--n"),
    (["--model", "smollm2-135m", "--split", "train"], "unknown split"),
    (["--resume", "/nonexistent/run"], "not a run folder"),
    ([], "--model is required"),
])
def test_generate_bad_input(args, needle):
    line = _one_line_error(runner.invoke(app, ["generate", *args]))
    assert needle in line


def test_generate_folder_without_weights(tmp_path, prompt_file):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    line = _one_line_error(runner.invoke(app, ["generate", "--model", str(empty),
                                               "--prompts", str(prompt_file)]))
    assert "without weights" in line


def test_generate_empty_prompt_file(tmp_path, tiny_folder):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    _one_line_error(runner.invoke(app, ["generate", "--model", str(tiny_folder), "--prompts", str(empty)]))
