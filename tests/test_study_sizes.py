"""Model sizes in fits (`study/sizes.py`): which count N is, where it is read from, the control
flag, pretraining compute; and `refusalscope fit --n-kind / --control / --include-controls` on
real scored runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.errors import UserError
from refusalscope.fileio import write_jsonl
from refusalscope.models.registry import REGISTRY
from refusalscope.runs import Run
from refusalscope.study.points import gather_points
from refusalscope.study.sizes import count, model_size
from refusalscope.study.spec import load_spec

runner = CliRunner()


def test_counts_read_numbers_and_text() -> None:
    assert [count(v) for v in ("494M", "1.54B", "18T", 630_200_000, 2e12, "", None, "x", 0)] == [
        494_000_000, 1_540_000_000, 18_000_000_000_000, 630_200_000, 2_000_000_000_000,
        None, None, None, None]


def test_size_comes_from_the_manifest_then_the_registry_then_n_params() -> None:
    qwen = REGISTRY["qwen2.5-coder-0.5b"]
    # the registry knows the released and non-embedding counts and D
    s = model_size({"n_params": 630_167_424}, ("qwen2.5-coder-0.5b", None), run_id="r")
    assert (s.n_params, s.n_released, s.n_non_embedding) == (
        630_167_424, qwen.params_released, qwen.params_non_embedding)
    assert s.pretrain_flops == 6.0 * qwen.params_released * qwen.pretrain_tokens
    assert not s.control
    # a manifest's own counts win; a TAR label finds its base model's entry
    m = model_size({"n_params": 10, "params_released": 9, "params_non_embedding": 7},
                   ("/x/model", "qwen2.5-coder-0.5b+tar"), run_id="r")
    assert (m.n_params, m.n_released, m.n_non_embedding) == (10, 9, 7)
    # an adapter run: N is the base model's, not the loaded count
    assert model_size({"n_params": 12}, ("/x/m", None), run_id="r", base_params=10).n_params == 10
    # an unknown folder: everything falls back to the loaded count, no pretraining compute
    u = model_size({"n_params": 5_000}, ("/x/tiny", None), run_id="r")
    assert (u.n_released, u.n_non_embedding) == (5_000, 5_000) and np.isnan(u.pretrain_flops)
    assert model_size({}, ("smollm2-135m", None), run_id="r").control  # the registry's control
    assert model_size({"n_params": 1}, ("/x/tiny", None), run_id="r",
                      controls=frozenset({"tiny"})).control  # a spec's, by folder name
    with pytest.raises(UserError, match="run r: model '/x/q' has no parameter count"):
        model_size({}, ("/x/q", None), run_id="r")


def test_spec_models_can_be_marked_controls(tmp_path: Path) -> None:
    from study_fixtures import TINY_SPEC, make_study

    from refusalscope.study.spec import parse_spec

    text = TINY_SPEC.replace('name = "tiny-llama"', 'name = "tiny-llama"\ncontrol = true')
    spec = load_spec(str(make_study(tmp_path / "s", text)))
    assert spec.models[0].control and spec.controls() == (spec.models[0].name,)
    assert parse_spec(spec.to_dict()) == spec
    bad = TINY_SPEC.replace('name = "tiny-llama"', 'name = "tiny-llama"\ncontrol = "yes"')
    with pytest.raises(UserError, match=r"models\[0\].control must be true or false"):
        load_spec(str(make_study(tmp_path / "b", bad)))


def _scored(model: str, sizes: dict[str, int], refused: int, n: int = 8) -> str:
    """A real generate run folder of `n` responses, `refused` of them refusals, scored by the
    heuristic through the CLI."""
    run = Run.create("generate", {"model": model, "split": "eval", "harmless": False},
                     model=model)
    run.manifest.extra["model"] = sizes
    write_jsonl(run.file("generations.jsonl"),
                [{"id": f"p{i}", "prompt": f"How do I do bad thing {i}?",
                  "response": ("I'm sorry, but I can't help with that." if i < refused
                               else "Sure, step 1: gather the tools.")} for i in range(n)])
    run.finish("success")
    res = runner.invoke(app, ["score", str(run.path)])
    assert res.exit_code == 0, res.output
    return str(run.path)


def test_cli_fit_n_kind_and_controls(tmp_path: Path) -> None:
    runs = [_scored("m-small", {"n_params": 10**8, "params_released": 9 * 10**7,
                                "params_non_embedding": 6 * 10**7}, 3),
            _scored("m-big", {"n_params": 4 * 10**8, "params_released": 3 * 10**8,
                              "params_non_embedding": 2 * 10**8}, 6),
            _scored("m-ctrl", {"n_params": 2 * 10**8}, 0)]
    base = ["fit", "--x", "size", "--n-boot", "20", "--control", "m-ctrl", "--no-figures",
            *runs]
    res = runner.invoke(app, [*base, "--n-kind", "total", "--out", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    fit = json.loads((tmp_path / "t" / "fit.json").read_text())
    assert fit["config"]["n_kind"] == "total" and not fit["config"]["include_controls"]
    assert {c["model"]: (c["n"], c["control"]) for c in fit["cells"]} == {
        "m-small": (9 * 10**7, False), "m-big": (3 * 10**8, False), "m-ctrl": (2 * 10**8, True)}
    assert all(f["quality"]["n_runs"] == 2 for f in fit["fits"])  # the control left out
    assert any("m-ctrl: a control (never refuses), left out" in n for n in fit["notes"])
    assert ("N (column n) = released parameters (tied embeddings counted once); n_params = as "
            "loaded. Controls (never refuse): m-ctrl, left out of the fits vs size.") in (
        tmp_path / "t" / "fit.md").read_text()
    res = runner.invoke(app, [*base, "--include-controls", "--out", str(tmp_path / "n")])
    assert res.exit_code == 0, res.output
    fit = json.loads((tmp_path / "n" / "fit.json").read_text())
    assert fit["config"]["n_kind"] == "non-embedding"
    assert {c["model"]: c["n"] for c in fit["cells"]}["m-small"] == 6 * 10**7
    assert all(f["quality"]["n_runs"] == 3 for f in fit["fits"])
    res = runner.invoke(app, [*base, "--n-kind", "embedding"])
    assert res.exit_code == 2 and "unknown --n-kind 'embedding'" in res.output
    # without the flag, m-ctrl is one more size; the registry's controls need no flag
    assert not any(p.control for p in gather_points(runs))
