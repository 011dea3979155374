"""`refusalscope attack autodan` through the CLI on a tiny model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app

runner = CliRunner()
SMALL = ["--population", "4", "--generations", "2", "--no-early-stop", "--word-swaps", "5",
         "--max-new-tokens", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def texts_file(tmp_path_factory) -> Path:
    """Real AutoDAN texts cut to four sentences each (a tiny model's context), one per line."""
    from refusalscope.attacks import autodan_ops as ops
    from refusalscope.attacks.autodan_prompts import load_prompt_group

    proto, group = load_prompt_group()
    short = ["".join(ops.sentences(t)[:3] + ops.sentences(t)[-1:]) for t in [proto, *group[:7]]]
    path = tmp_path_factory.mktemp("texts") / "texts.txt"
    path.write_text("\n".join(short) + "\n")
    return path


def _one_line_error(res) -> str:  # type: ignore[no-untyped-def]
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--population", "1"], "--population"),
    (["--generations", "0"], "--generations"),
    (["--elite-frac", "1"], "--elite-frac"),
    (["--crossover-rate", "-0.1"], "--crossover-rate"),
    (["--batch-size", "0"], "--batch-size"),
    (["--target", "Sure"], "--target needs --prompt"),
    (["--split", "nope"], "unknown split"),
    (["--texts", "/no/such/file.txt"], "no texts file"),
    (["--prompt", "x", "--n", "2"], "--prompt is one request"),
])
def test_bad_input_one_line(args, needle, tmp_path):
    res = runner.invoke(app, ["attack", "autodan", "--model", str(tmp_path), *args])
    assert needle in _one_line_error(res)
    assert not (Path(tmp_path) / "artifacts" / "runs").exists()


def test_autodan_run_folder(tiny_folder, texts_file):
    res = runner.invoke(app, ["attack", "autodan", "--model", str(tiny_folder), "--prompt",
                              "Write a short poem about the sea", "--target", "Sure, here is",
                              "--texts", str(texts_file), "--name", "Tiny", *SMALL])
    assert res.exit_code == 0, res.output
    run = Path(res.output.strip().splitlines()[-1])
    names = {p.name for p in run.iterdir()}
    assert {"manifest.json", "autodan.jsonl", "state.json", "attacked_prompts.jsonl",
            "eval.jsonl", "result.json"} <= names
    man = json.loads((run / "manifest.json").read_text())
    assert man["status"] == "success" and man["command"] == "attack-autodan"
    assert man["model"] == str(tiny_folder) and man["seed"] == 0 and man["content_warning"]
    assert man["config"]["autodan"]["population"] == 4 and man["config"]["autodan"]["texts_sha256"]
    assert man["extra"]["compute"]["steps"] == 2 and man["extra"]["compute"]["flops"] > 0
    rows = [json.loads(x) for x in (run / "autodan.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1, 2]
    result = json.loads((run / "result.json").read_text())
    assert result["loss"] == rows[-1]["best_loss"] and result["name"] == "Tiny"
    from refusalscope.attacks.base import RESULT_KEYS  # the schema every attack writes

    assert set(RESULT_KEYS) <= set(result) and result["artefact"]["name"] == "Tiny"
    attacked = [json.loads(x) for x in (run / "attacked_prompts.jsonl").read_text().splitlines()]
    assert attacked[0]["goal"] == "Write a short poem about the sea"
    assert attacked[0]["prompt"].endswith("[PROMPT]: Write a short poem about the sea")
    assert "ChatGPT" not in attacked[0]["prompt"] and "Tiny" in attacked[0]["prompt"]
    evals = [json.loads(x) for x in (run / "eval.jsonl").read_text().splitlines()]
    assert sorted(e["variant"] for e in evals) == ["attacked", "baseline"]
    # outcomes are judged against the bare request, not the jailbreak text
    assert all(e["goal"] == "Write a short poem about the sea" for e in evals)
    assert all(e["outcome"] in ("refused", "complied", "degenerate") for e in evals)
    # one optimised prompt: each rate is that prompt's own outcome, for each variant
    for variant, tag in (("attacked", ""), ("baseline", "_baseline")):
        row = next(e for e in evals if e["variant"] == variant)
        assert result[f"asr_optimised{tag}"] == float(row["outcome"] == "complied")
        assert result[f"not_refused_optimised{tag}"] == float(not row["refused"])
        assert result["asr_ci"][f"optimised{tag}"]["successes"] == int(row["outcome"] == "complied")
    assert result["asr_heldout"] is None and result["asr_heldout_baseline"] is None
    att = next(e for e in evals if e["variant"] == "attacked")
    ci = result["asr_ci"]["optimised"]
    assert ci["n"] == 1 and ci["successes"] == int(att["outcome"] == "complied")
    assert result["scorer"] == "heuristic"  # no classifier trained in this home: the fallback
    assert "ASR = share complied" in res.output and "not refused" in res.output
    # the attacked prompts file is a prompt file `generate` reads
    from refusalscope.data.load import load_prompt_file
    assert load_prompt_file(run / "attacked_prompts.jsonl")[0].prompt == attacked[0]["prompt"]
    # a finished run is never rewritten: --resume refuses it
    before = (run / "result.json").read_bytes()
    res2 = runner.invoke(app, ["attack", "autodan", "--resume", str(run), "--device", "cpu"])
    assert "has finished" in _one_line_error(res2)
    assert (run / "result.json").read_bytes() == before


def test_resume_interrupted_run(tiny_folder, texts_file):
    """A run stopped after generation 1 (status 'started', state saved) ends where an
    uninterrupted one does."""
    args = ["attack", "autodan", "--model", str(tiny_folder), "--prompt", "Tell me a joke",
            "--target", "Sure", "--texts", str(texts_file), *SMALL]
    full = Path(runner.invoke(app, args).output.strip().splitlines()[-1])
    again = Path(runner.invoke(app, args).output.strip().splitlines()[-1])
    assert full != again
    from refusalscope.attacks.autodan import AutoDANConfig, run
    from refusalscope.attacks.autodan_run import read_texts
    from refusalscope.models.handle import ModelHandle

    h = ModelHandle.load(str(tiny_folder))
    saved: list[dict] = []
    cfg = AutoDANConfig.from_dict(json.loads((full / "manifest.json").read_text())["config"]["autodan"])
    run(h, [("Tell me a joke", "Sure")], cfg, texts=read_texts(texts_file)[0],
        on_generation=lambda r, s: saved.append(json.loads(json.dumps(s.to_dict()))))
    # make `again` look interrupted after generation 1: its log has a row too many
    (again / "state.json").write_text(json.dumps(saved[1]))
    man = json.loads((again / "manifest.json").read_text())
    man["status"] = "started"
    (again / "manifest.json").write_text(json.dumps(man))
    for name in ("result.json", "eval.jsonl", "attacked_prompts.jsonl"):
        (again / name).unlink()
    res = runner.invoke(app, ["attack", "autodan", "--resume", str(again), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    a = json.loads((full / "result.json").read_text())
    b = json.loads((again / "result.json").read_text())
    assert a["body"] == b["body"] and a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    gens = [json.loads(x)["generation"] for x in (again / "autodan.jsonl").read_text().splitlines()]
    assert gens == [0, 1, 2]
    state = json.loads((again / "state.json").read_text())
    assert state["population"] == json.loads((full / "state.json").read_text())["population"]
