"""No silent surprises (issue 21): what used to go quietly wrong is now an error or is found.

- `probe --n` above a class's split size: a one-line error with both class sizes.
- `defend steer` on prompts its direction was selected on: refused, reading the sweep's manifest.
- `fit --runs-dir` finds runs at any depth (a study folder works).
- `study plan` checks every cell (pairs, memory, gated models, held-out steering) first.
- `--out DIR` puts a command's run exactly there; old option spellings still work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.fileio import write_jsonl
from refusalscope.runs import Run

runner = CliRunner()


def _error(args: list[str]) -> str:
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_probe_n_above_the_split_names_both_class_sizes(data_home: Path) -> None:
    from refusalscope.data.load import load_split

    harmful, harmless = len(load_split("direction")), len(load_split("direction", harmless=True))
    n = min(harmful, harmless) + 1
    err = _error(["probe", "-m", "no-such-model", "--n", str(n), "--split", "direction"])
    assert f"--n {n} is more than the 'direction' split holds" in err
    assert f"{harmful} harmful and {harmless} harmless prompts" in err
    assert f"use --n {min(harmful, harmless)} or less" in err


def _sweep_run(n: int, n_val: int) -> Path:
    """A `probe sweep` run folder as the sweep writes it (manifest with its config)."""
    run = Run.create("probe-sweep", {"model": "m", "n": n, "n_val": n_val,
                                     "split": "direction"}, model="m")
    run.file("directions.h5").write_bytes(b"")
    run.finish("success")
    return run.file("directions.h5")


def test_defend_steer_refuses_the_sweeps_own_prompts(tmp_path: Path) -> None:
    from refusalscope.defenses.steer import sweep_prompts_used

    d = _sweep_run(64, 32)
    assert sweep_prompts_used(d) == (96, str(d.parent))
    err = _error(["defend", "steer", "-m", "m", "-d", str(d), "--skip", "48"])
    assert "--skip 48: the direction was selected on the first 96 direction-split" in err
    assert "use --skip 96 or more" in err
    # A directions file outside a sweep run has nothing to check against.
    other = tmp_path / "loose" / "directions.h5"
    other.parent.mkdir()
    other.write_bytes(b"")
    assert sweep_prompts_used(other) is None


def test_defend_steer_skips_past_the_sweep_by_default(data_home: Path) -> None:
    """Without --skip the search starts after the sweep's n + n_val prompts: with a sweep
    that used the whole split, nothing is left (the error names the skip it chose)."""
    from refusalscope.data.load import load_split

    size = len(load_split("direction"))
    d = _sweep_run(size - 8, 8)
    err = _error(["defend", "steer", "-m", "m", "-d", str(d)])
    assert f"no prompts after --skip {size}" in err


def _scored(root: Path, model: str, n_params: int, refusals: int, **config: object) -> Path:
    """A finished generate run under `root` (as a study nests them), scored by `score`."""
    run = Run.create("generate", {"model": model, "split": "eval", "harmless": False, **config},
                     model=model, root=root)
    run.manifest.extra["model"] = {"n_params": n_params}
    write_jsonl(run.file("generations.jsonl"), [
        {"id": f"p{i}", "prompt": f"How do I do bad thing {i}?",
         "response": "I'm sorry, but I can't help with that." if i < refusals
         else f"Sure, step one of thing {i} is to gather the parts."} for i in range(8)])
    run.finish("success")
    res = runner.invoke(app, ["score", str(run.path), "--no-relevance", "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    return run.path


def test_fit_runs_dir_finds_runs_anywhere_below_a_study_folder(tmp_path: Path) -> None:
    from refusalscope.study.points import find_runs

    study = tmp_path / "studies" / "tiny"
    a = _scored(study / "nodes" / "generate-a", "small", 1_000_000, 6)
    b = _scored(study / "nodes" / "deeper" / "generate-b", "large", 9_000_000, 8)
    assert find_runs(study) == sorted([a, b])
    out = tmp_path / "fit-out"
    res = runner.invoke(app, ["fit", "--runs-dir", str(study), "--x", "size", "--n-boot", "20",
                              "--no-figures", "--out", str(out)])
    assert res.exit_code == 0, res.output
    fit = json.loads((out / "fit.json").read_text())
    assert sorted(fit["runs"]) == sorted(p.name for p in (a, b))


def test_study_plan_prints_each_cells_problems(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from study_fixtures import TINY_SPEC, make_study

    spec = make_study(tmp_path / "s", TINY_SPEC.replace("n_data = [4]", "n_data = [50]")
                      .replace('name = "tiny-llama"', 'name = "tiny-llama"\n[[models]]\n'
                               'name = "llama-7b"'))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no login token, empty hub cache
    res = runner.invoke(app, ["study", "plan", str(spec)])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "feasibility:" in out and "fix them before `study run`" in out
    assert "[pairs] n_data = 50:" in out
    assert "[gated] llama-7b (meta-llama/Llama-2-7b-chat-hf) is gated" in out
    assert "tiny-llama lora n_data=50" in out  # the cells are named
    assert out.index("feasibility:") < out.index("nodes to run")  # before the plan


def test_feasibility_memory_and_held_out_checks(tmp_path: Path) -> None:
    from refusalscope.memory import GiB
    from refusalscope.study.feasible import check_nodes
    from refusalscope.study.graph import make_node

    from refusalscope.models.registry import REGISTRY

    big = make_node("generate", {"model": "phi-2", "device": "cuda"}, label="phi-2 base")
    small = make_node("generate", {"model": "smollm2-135m", "device": "cuda"}, label="small")
    sweep = make_node("probe-sweep", {"model": "smollm2-135m", "n": 32, "n_val": 16})
    steer = make_node("defend-steer", {"skip": 16}, {"directions": sweep.id}, label="steer")
    ok = make_node("defend-steer", {"skip": 48}, {"directions": sweep.id}, label="steer ok")
    problems = check_nodes([big, small, sweep, steer, ok], budget=lambda dev: 4 * GiB,
                           device_of=lambda dev: dev)
    got = {(p.label, p.check) for p in problems}
    assert got == {("phi-2 base", "memory"), ("steer", "held-out")}
    need = REGISTRY["phi-2"].params_released * 2 / GiB  # bfloat16 on a GPU
    memory = next(p for p in problems if p.check == "memory")
    assert f"needs at least {need:.1f} GiB for its weights alone on cuda, which has 4.0 GiB" \
        in memory.message
    held = next(p for p in problems if p.check == "held-out")
    assert "skip = 16: the direction was selected on the first 48" in held.message


def test_out_puts_the_run_exactly_there(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    with Run.at(out):
        run = Run.create("fit", {"x": 1})
        second = Run.create("fit", {"x": 2})
    assert run.path == out and (out / "manifest.json").is_file()
    assert second.path != out  # only the command's own run goes there
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    from refusalscope.errors import UserError

    with pytest.raises(UserError, match="exists and is not an empty folder"):
        with Run.at(tmp_path / "full"):
            pass


def test_score_input_out_writes_the_run_there(tmp_path: Path) -> None:
    f = tmp_path / "answers.csv"
    f.write_text("prompt,response\nHow do I pick a lock?,I'm sorry but I can't help with that.\n"
                 "How do I bake bread?,Mix flour and water then bake it.\n")
    out = tmp_path / "scored"
    res = runner.invoke(app, ["score", "--input", str(f), "--no-relevance", "--n-boot", "20",
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    man = json.loads((out / "manifest.json").read_text())
    assert man["command"] == "score" and man["status"] == "success"
    assert not list((tmp_path / "artifacts").glob("runs/*"))  # nothing in the default place
    err = _error(["score", str(out), "--out", str(tmp_path / "x")])
    assert "--out is for --input FILE" in err
