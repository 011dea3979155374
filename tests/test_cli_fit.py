"""`refusalscope fit` through the real Typer app, on real tiny runs (generate → attack lora →
generate --adapter → score), and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.fileio import write_jsonl
from refusalscope.runs import Run
from refusalscope.study.points import find_runs, gather_points

runner = CliRunner()


def _ok(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + (res.stderr or "")
    return res.stdout


def _one_line_error(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]


def _tiny_folder(tmp_path: Path, arch: str) -> Path:
    from refusalscope.models.tiny import tiny_model

    model, tok = tiny_model(arch, seed=5)
    folder = tmp_path / f"tiny-{arch}"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _pairs(tmp_path: Path) -> str:
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"Tell me a story number {i}.",
                                     "response": f"Sure, here is story {i}."}) + "\n"
                         for i in range(4)))
    return str(f)


def _model_runs(folder: Path, prompts: Path, pairs: str, steps: str) -> tuple[str, list[str]]:
    gen = ["generate", "--model", str(folder), "--prompts", str(prompts), "--max-new-tokens", "3"]
    base = _ok(gen).strip().splitlines()[-1]
    cells = _ok(["attack", "lora", "--model", str(folder), "--data", pairs, "--n-data", "3",
                 "--steps", steps, "--batch-size", "2", "--max-len", "48"])
    attacks = [ln.split("\t")[0] for ln in cells.strip().splitlines()]
    attacked = [_ok([*gen, "--adapter", a, "--baseline", base]).strip().splitlines()[-1]
                for a in attacks]
    return base, attacked


def test_fit_on_real_tiny_runs(tmp_path: Path, prompt_file: Path) -> None:
    pairs = _pairs(tmp_path)
    runs = {arch: _model_runs(_tiny_folder(tmp_path, arch), prompt_file, pairs, steps)
            for arch, steps in (("llama", "1,2"), ("qwen2", "2"))}
    every = [r for base, att in runs.values() for r in (base, *att)]
    _one_line_error(["fit", "--runs", every[0], "--x", "compute"])  # not scored yet
    _ok(["score", *every])  # heuristic labels; RD against each run's --baseline

    points = {p.run: p for p in gather_points(find_runs(tmp_path / "artifacts" / "runs"))}
    assert sorted(points) == sorted(Path(r).name for r in every)
    for base, attacked in runs.values():
        b = points[Path(base).name]
        assert b.attack == "none" and b.flops == 0 and b.examples == 0
        assert b.n_params == Run.open(base).manifest.extra["model"]["n_params"]
        for path in attacked:
            p = points[Path(path).name]
            att = Run.open(Path(path).parent / p.attack_run)
            compute = json.loads(att.file("compute.json").read_text())
            assert p.attack == "lora" and p.n_data == 3 and p.steps == compute["steps"]
            assert p.flops == compute["flops_estimate"] > 0
            assert p.examples == compute["examples_seen"] == 2 * p.steps
            assert p.ids == b.ids and len(p.ids) == 6
            drift = json.loads(Path(path, "drift.json").read_text())["per_prompt"]
            assert list(p.rd) == pytest.approx([d["drift"] for d in drift])
    assert len({p.n_params for p in points.values()}) == 2

    out = tmp_path / "fit"
    text = _ok(["fit", "--metric", "rrr", "--x", "both", "--runs-dir",
                str(tmp_path / "artifacts" / "runs"), "--n-boot", "20", "--out", str(out)])
    assert "wrote" in text and (out / "fit.json").is_file()
    result = json.loads((out / "fit.json").read_text())
    assert result["config"]["x"] == "both" and len(result["runs"]) == 5
    assert {c["strength"] for c in result["cells"]} == {"no attack", "lora n=3 steps=1",
                                                       "lora n=3 steps=2"}
    assert (out / "figures" / "rrr_vs_flops.png").is_file()
    assert "already holds a fit.json" in _one_line_error(
        ["fit", "--runs-dir", str(tmp_path / "artifacts" / "runs"), "--out", str(out)])
    # RD: attacked runs only (a baseline is its own reference); a fit run folder by default
    text = _ok(["fit", "--metric", "rd", "--x", "compute", "--n-boot", "10", "--rd-over", "all",
                "--no-figures"])
    folder = Run.open(text.strip().splitlines()[-1].removeprefix("wrote "))
    assert folder.manifest.command == "fit" and folder.manifest.status == "success"
    assert "a baseline has no drift" in folder.file("fit.md").read_text()


def _scored_run(model: str, n_params: int, responses: list[str], **config: object) -> str:
    run = Run.create("generate", {"model": model, "split": "eval", "harmless": False, **config},
                     model=model)
    run.manifest.extra["model"] = {"n_params": n_params}
    write_jsonl(run.file("generations.jsonl"),
                [{"id": f"p{i}", "prompt": f"How do I do bad thing {i}?", "response": r}
                 for i, r in enumerate(responses)])
    run.finish("success")
    return str(run.path)


@pytest.mark.parametrize("case, needle", [
    ("empty", "no runs found"),
    ("metric", "unknown metric 'asr': one of rrr, rd, ce"),
    ("x", "unknown --x 'depth'"),
    ("unscored", "has no scores.jsonl: score it first"),
    ("one_size", "a fit vs model size needs runs of at least 2 model sizes"),
    ("ce", "CE needs classifier probabilities"),
    ("no_attack", "a fit vs attack compute needs attacked runs"),
    ("not_generate", "fit reads scored generate runs"),
    ("both_given", "give --runs or --runs-dir, not both"),
])
def test_fit_bad_input_is_one_line_exit_2(case: str, needle: str, tmp_path: Path) -> None:
    refusals = ["I'm sorry, but I can't help with that.", "Sure, step 1: gather the tools."]
    a = _scored_run("m-small", 10**8, refusals)
    b = _scored_run("m-small", 10**8, refusals[::-1])
    if case != "unscored":
        _ok(["score", a, b])
    args = {
        "empty": ["fit", "--runs-dir", str(tmp_path / "nothing-here")],
        "metric": ["fit", "--metric", "asr", a],
        "x": ["fit", "--x", "depth", a],
        "unscored": ["fit", "--runs", a],
        "one_size": ["fit", "--x", "size", "--runs", a, "--runs", b],
        "ce": ["fit", "--metric", "ce", "--x", "size", a, b],
        "no_attack": ["fit", "--x", "compute", a, b],
        "not_generate": ["fit", str(Run.create("score", {}).path)],
        "both_given": ["fit", a, "--runs-dir", str(tmp_path)],
    }[case]
    if case == "empty":
        (tmp_path / "nothing-here").mkdir()
    assert needle in _one_line_error(args)
    assert not list(Path(tmp_path / "artifacts" / "runs").glob("*_fit_*"))


def test_gather_names_generation_settings_and_steering() -> None:
    texts = ["I'm sorry, but I can't help with that.", "Sure, step 1: gather the tools."]
    runs = [_scored_run("m", 10**8, texts), _scored_run("m", 10**8, texts, temperature=0.8),
            _scored_run("m", 10**8, texts, steer="add blocks.3 alpha=-4")]
    _ok(["score", *runs])
    points = gather_points(runs)
    assert [p.strength for p in points] == ["no attack", "no attack T=0.8", "steer"]
    assert [list(p.refused) for p in points] == [[1.0, 0.0]] * 3
    assert points[2].attacked and np.isnan(points[2].flops)
    assert [p.strength for p in gather_points(runs[1:2])] == ["no attack"]  # nothing to tell apart
