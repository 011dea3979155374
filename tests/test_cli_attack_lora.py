"""`refusalscope attack lora` through the CLI: a tiny grid end to end, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.runs import Run

runner = CliRunner()


def _pairs(tmp_path, n=5):
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"Tell me a story number {i}.",
                                     "response": f"Sure, here is story {i}."}) + "\n"
                         for i in range(n)))
    return str(f)


def _one_line_error(result):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_attack_lora_grid(tiny_folder, tmp_path):
    args = ["attack", "lora", "--model", str(tiny_folder), "--data", _pairs(tmp_path),
            "--n-data", "3", "--steps", "1,2", "--batch-size", "2", "--max-len", "48"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output + res.stderr
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2 and all(ln.endswith("done") for ln in lines)
    run = Run.open(lines[1].split("\t")[0])
    assert run.manifest.config["steps"] == 2 and run.manifest.status == "success"
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert all(ln.endswith("skipped (finished)") for ln in again.stdout.strip().splitlines())


@pytest.mark.parametrize("extra, needle", [
    (["--steps", "0"], "--steps must be at least 1 (got 0)"),
    (["--steps", "1,x"], "--steps: 'x' is not a int"),
    (["--n-data", "9"], "--n-data 9 is more than the 5 pairs in"),
    (["--target-modules", "q_proj,nope"], "unknown target modules nope"),
    (["--target-kind", "advbench-target"], "--data gives full responses"),
])
def test_attack_lora_bad_input(tiny_folder, tmp_path, extra, needle):
    args = ["attack", "lora", "--model", str(tiny_folder), "--data", _pairs(tmp_path),
            "--n-data", "2", "--steps", "1"] + extra
    line = _one_line_error(runner.invoke(app, args))
    assert needle in line
    assert not list((tmp_path / "artifacts").glob("runs/*"))  # nothing half-written


def test_attack_lora_split_too_small(data_home, tiny_folder):
    line = _one_line_error(runner.invoke(app, ["attack", "lora", "--model", str(tiny_folder),
                                               "--n-data", "100000", "--steps", "1"]))
    assert "more than the 430 pairs in the full responses (PyRIT) and AdvBench" in line


def test_attack_lora_needs_model():
    assert "--model is required" in _one_line_error(runner.invoke(app, ["attack", "lora"]))


def test_resume_finished_run_is_an_error(tiny_folder, tmp_path):
    res = runner.invoke(app, ["attack", "lora", "--model", str(tiny_folder), "--data",
                              _pairs(tmp_path), "--n-data", "2", "--steps", "1"])
    path = res.stdout.split("\t")[0]
    assert "already finished" in _one_line_error(runner.invoke(app, ["attack", "lora",
                                                                     "--resume", path]))


def test_attack_lora_out_puts_cells_in_the_folder_and_resumes_there(tmp_path, tiny_folder):
    """`attack lora --out DIR`: every cell's run folder is made in DIR (not under the artifacts
    runs folder), and the same command again finds the finished cells there and skips them."""
    out = tmp_path / "sweep"
    args = ["attack", "lora", "-m", str(tiny_folder), "--data", _pairs(tmp_path),
            "--n-data", "3", "--steps", "1,2", "--batch-size", "2", "--max-len", "48",
            "--out", str(out)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    lines = [ln for ln in first.stdout.splitlines() if ln.strip()]
    runs = [Path(ln.split("\t")[0]) for ln in lines]
    assert len(runs) == 2
    assert all(r.parent == out and (r / "manifest.json").is_file() for r in runs)
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert [ln.split("\t")[0] for ln in again.stdout.splitlines() if ln.strip()] == \
        [str(r) for r in runs]
    assert all(ln.endswith("skipped (finished)") for ln in again.stdout.splitlines() if ln.strip())
