"""`refusalscope attack gcg` through the CLI on a tiny model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app

runner = CliRunner()
SMALL = ["--steps", "2", "--search-width", "8", "--topk", "4", "--suffix-len", "4",
         "--max-new-tokens", "4", "--device", "cpu"]


def _one_line_error(res) -> str:  # type: ignore[no-untyped-def]
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    return lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--suffix-len", "0"], "--suffix-len"),
    (["--topk", "0"], "--topk"),
    (["--n-replace", "9", "--suffix-len", "4"], "--n-replace"),
    (["--target", "Sure"], "--target needs --prompt"),
])
def test_bad_input_one_line(args, needle, tmp_path):
    res = runner.invoke(app, ["attack", "gcg", "--model", str(tmp_path), *args])
    assert needle in _one_line_error(res)
    assert not (Path(tmp_path) / "artifacts" / "runs").exists()


def test_gcg_run_folder(tiny_folder):
    res = runner.invoke(app, ["attack", "gcg", "--model", str(tiny_folder), "--prompt",
                              "Write a short poem about the sea", "--target", "Sure, here is",
                              *SMALL])
    assert res.exit_code == 0, res.output
    run = Path(res.output.strip().splitlines()[-1])
    names = {p.name for p in run.iterdir()}
    assert {"manifest.json", "gcg.jsonl", "state.json", "attacked_prompts.jsonl", "eval.jsonl",
            "result.json"} <= names
    man = json.loads((run / "manifest.json").read_text())
    assert man["status"] == "success" and man["command"] == "attack-gcg"
    assert man["model"] == str(tiny_folder) and man["seed"] == 0
    assert man["config"]["gcg"]["suffix_len"] == 4 and man["content_warning"]
    assert man["extra"]["compute"]["steps"] == 2
    steps = [json.loads(x) for x in (run / "gcg.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == [1, 2]
    result = json.loads((run / "result.json").read_text())
    assert result["suffix"] == steps[-1]["suffix"] and len(result["suffix_ids"]) == 4
    from refusalscope.attacks.base import RESULT_KEYS  # the schema every attack writes

    assert set(RESULT_KEYS) <= set(result) and result["artefact"]["suffix"] == result["suffix"]
    assert result["summary"]["requests"]["attacked"]["n"] == 1
    attacked = [json.loads(x) for x in (run / "attacked_prompts.jsonl").read_text().splitlines()]
    assert attacked[0]["prompt"] == "Write a short poem about the sea" + result["suffix"]
    # the attacked prompts file is a prompt file `generate` reads
    from refusalscope.data.load import load_prompt_file
    assert load_prompt_file(run / "attacked_prompts.jsonl")[0].prompt == attacked[0]["prompt"]
    # a finished run is never rewritten: --resume refuses it
    before = (run / "result.json").read_bytes()
    res2 = runner.invoke(app, ["attack", "gcg", "--resume", str(run), "--device", "cpu"])
    assert "has finished" in _one_line_error(res2)
    assert (run / "result.json").read_bytes() == before


def test_resume_interrupted_run(tiny_folder):
    """A run stopped after step 1 (status 'started', state saved) continues to the same result."""
    args = ["attack", "gcg", "--model", str(tiny_folder), "--prompt", "Tell me a joke",
            "--target", "Sure", *SMALL]
    full = Path(runner.invoke(app, args).output.strip().splitlines()[-1])
    again = Path(runner.invoke(app, [*args, "--seed", "0"]).output.strip().splitlines()[-1])
    # make `again` look interrupted after step 1: keep step 1's log and state only
    rows = (again / "gcg.jsonl").read_text().splitlines()
    (again / "gcg.jsonl").write_text(rows[0] + "\n")
    man = json.loads((again / "manifest.json").read_text())
    man["status"] = "started"
    (again / "manifest.json").write_text(json.dumps(man))
    for name in ("result.json", "eval.jsonl", "attacked_prompts.jsonl"):
        (again / name).unlink()
    from refusalscope.attacks.gcg import GCGConfig, run
    from refusalscope.models.handle import ModelHandle
    h = ModelHandle.load(str(tiny_folder))
    saved: list[dict] = []
    cfg = GCGConfig(steps=1, search_width=8, topk=4, suffix_len=4)
    run(h, [("Tell me a joke", "Sure")], cfg, on_step=lambda r, s: saved.append(s.to_dict()))
    (again / "state.json").write_text(json.dumps(saved[-1]))  # the state saved after step 1
    res = runner.invoke(app, ["attack", "gcg", "--resume", str(again), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    a = json.loads((full / "result.json").read_text())
    b = json.loads((again / "result.json").read_text())
    assert a["suffix_ids"] == b["suffix_ids"] and a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    assert len((again / "gcg.jsonl").read_text().splitlines()) == 2


def test_gcg_under_a_steering_intervention(tiny_folder, tmp_path):
    """`--steer` attacks the model with the hooks on: pinned in the config, bad files refused."""
    from refusalscope.interp.directions import compute_directions, save_directions
    from refusalscope.models.handle import ModelHandle

    h = ModelHandle.load(str(tiny_folder))
    d = compute_directions(h, ["Write a poem", "Tell me a joke"], ["Sure, here", "As an AI"],
                           kind="last")
    d.selected = (1, 0)
    path = save_directions(tmp_path / "d.h5", d)
    base = ["attack", "gcg", "--model", str(tiny_folder), "--prompt", "Tell me a joke",
            "--target", "Sure", *SMALL]
    res = runner.invoke(app, [*base, "--steer", f"ablate:{path}"])
    assert res.exit_code == 0, res.output
    run = Path(res.output.strip().splitlines()[-1])
    cfg = json.loads((run / "manifest.json").read_text())["config"]
    assert cfg["steer"].startswith(f"ablate:{path}") and ":sha256=" in cfg["steer"]
    plain = Path(runner.invoke(app, base).output.strip().splitlines()[-1])
    first = [json.loads((r / "gcg.jsonl").read_text().splitlines()[0])["loss"] for r in (run, plain)]
    assert first[0] != pytest.approx(first[1], abs=1e-6)  # the hooks were on while optimising
    assert "no directions file" in _one_line_error(
        runner.invoke(app, [*base, "--steer", f"ablate:{tmp_path / 'nope.h5'}"]))
