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


def test_generate_compile_gives_the_default_tokens(tiny_folder, prompt_file, monkeypatch):
    """`generate --compile` (transformers' `generate` with a static KV cache) writes the same
    responses, token counts and finish reasons as the default path (our own KV-cached loop that
    drops finished rows), on a left-padded batch; and it really takes the static-cache path."""
    import refusalscope.generation as gen

    calls = []
    real = gen._hf_generate

    def counting(*args, **kwargs):  # the real static-cache generate, counted
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "_hf_generate", counting)
    _stop_early(tiny_folder, json.loads(prompt_file.read_text().splitlines()[0])["prompt"])
    rows = {}
    for flags in ([], ["--compile"]):
        res = runner.invoke(app, ["generate", "--model", str(tiny_folder), "--prompts",
                                  str(prompt_file), "--n", "6", "--max-new-tokens", "12",
                                  "--batch-size", "3", "--device", "cpu", *flags])
        assert res.exit_code == 0, res.output
        run = res.stdout.strip().splitlines()[-1]
        rows[bool(flags)] = {r["id"]: r for r in read_jsonl(f"{run}/generations.jsonl")}
    assert len(calls) == 2  # two batches of 3 through the static cache, none by default
    assert rows[False].keys() == rows[True].keys() == {f"q{i}" for i in range(6)}
    for pid, r in rows[False].items():
        c = rows[True][pid]
        assert (c["response"], c["new_tokens"], c["finish_reason"]) == \
            (r["response"], r["new_tokens"], r["finish_reason"]), pid
    assert len({r["response"] for r in rows[False].values()}) > 1  # tokens depend on the prompt
    reasons = [r["finish_reason"] for r in rows[False].values()]
    assert "eos" in reasons and "length" in reasons  # rows finish mid-batch


def _stop_early(folder, prompt):
    """Make the 6th token the tiny model greedily writes for `prompt` an end-of-sequence
    token too (generation_config.json), so that some rows of a batch finish before others."""
    import torch

    from refusalscope.models.handle import ModelHandle, RuntimeOptions

    h = ModelHandle.load(str(folder), options=RuntimeOptions("cpu", "float32"))
    enc = h.tokenizer(h.format_prompt(prompt), return_tensors="pt",
                      add_special_tokens=not h.has_chat_template)
    with torch.inference_mode():
        out = h.model.generate(**enc, max_new_tokens=8, do_sample=False, temperature=None,
                               top_p=None, top_k=None, pad_token_id=h.tokenizer.pad_token_id)
    new = out[0, enc["input_ids"].shape[1]:].tolist()
    stop = next(t for i, t in enumerate(new) if i >= 5 and t not in new[:i])
    gc = h.base_model.generation_config
    gc.eos_token_id = [h.tokenizer.eos_token_id, stop]
    gc.save_pretrained(folder)
