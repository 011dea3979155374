"""A two-model, two-attack, one-defense tiny study run for real: LoRA, GCG chained after the
LoRA cell (`after = "lora"`), and the steering defense after each LoRA cell.

Chained runs must be their own attack kind with the summed compute of both parts (never pooled
with the plain LoRA cell), and every figure panel must draw the fit of its own attack kind and
defense. The tiny models refuse nothing, so the figure tests draw refusal labels at random
(fixed seed) on the real points; attack kinds, defenses, compute and sizes are the runs' own.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from defense_fixtures import write_built_all
from study_fixtures import make_study
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.errors import UserError
from refusalscope.study.fitgroups import compute_group, joint_group

N_PROMPTS = 24
SPEC = f"""
name = "multi"
seeds = [0]
scorers = ["heuristic"]
drift = false
[eval]
prompts = "prompts.jsonl"
n = {N_PROMPTS}
max_new_tokens = 3
batch_size = 8
[[models]]
name = "tiny-llama"
[[models]]
name = "tiny-llama-5l"
[attacks.lora]
n_data = [4]
steps = [1, 3]
max_len = 32
batch_size = 2
data = "pairs.jsonl"
[attacks.gcg]
kind = "gcg"
after = "lora"
steps = [1, 2]
search_width = 4
topk = 4
suffix_len = 2
n = 2
max_new_tokens = 2
[defenses.steer]
alphas = [0, 4]
n = 2
max_new_tokens = 3
sweep_n = 3
sweep_n_val = 2
positions = "last"
"""


def _save_tiny(folder: Path, layers: int) -> None:
    """A random-weight tiny Llama with `layers` layers (a second model size)."""
    import torch
    from transformers import AutoModelForCausalLM

    from refusalscope.models.tiny import tiny_config, tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = tiny_config("llama", vocab_size=len(tok), num_hidden_layers=layers)
    cfg.eos_token_id, cfg.pad_token_id, cfg.bos_token_id = tok.eos_token_id, tok.pad_token_id, None
    torch.manual_seed(layers)
    model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the study once for this module: generate runs, and the attack nodes' outputs."""
    from refusalscope.study.executor import record, study_dir
    from refusalscope.study.graph import expand
    from refusalscope.study.spec import load_spec

    root = tmp_path_factory.mktemp("multi")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFUSALSCOPE_ARTIFACTS", str(root / "artifacts"))
        mp.setenv("REFUSALSCOPE_HOME", str(root / "home"))
        spec_path = make_study(root / "s", SPEC)
        _save_tiny(root / "s" / "tiny-llama-5l", 5)
        (root / "s" / "prompts.jsonl").write_text("".join(
            json.dumps({"id": f"q{i:02d}", "prompt": f"Tell me about topic number {i}."}) + "\n"
            for i in range(N_PROMPTS)))
        write_built_all()  # GCG's attack-train prompts and the steering direction split
        res = CliRunner().invoke(app, ["study", "run", str(spec_path)])
        assert res.exit_code == 0, res.output
        nodes = expand(load_spec(str(spec_path)))
        folder = study_dir("multi")
        # node.json keeps paths relative to the study; record() gives them back absolute
        out = {n.id: record(folder, n)["outputs"] for n in nodes}
    return {"gens": [out[n.id]["run"] for n in nodes if n.kind == "generate"],
            "lora": [out[n.id]["runs"] for n in nodes if n.kind == "attack-lora"],
            "gcg": [out[n.id]["run"] for n in nodes if n.kind == "attack-gcg"],
            "models": [str(root / "s" / "tiny-llama"), str(root / "s" / "tiny-llama-5l")]}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def test_chained_attack_is_its_own_kind_with_summed_compute(study: dict[str, Any]) -> None:
    from refusalscope.study.fitgroups import compute_specs
    from refusalscope.study.fitspec import Gathered
    from refusalscope.study.points import gather_points

    points = gather_points(study["gens"])
    assert {(p.attack, p.defense) for p in points} == {
        ("none", "none"), ("lora", "none"), ("lora", "steer"), ("lora+gcg", "none")}
    chained = [p for p in points if p.attack == "lora+gcg"]
    assert len(chained) == 4  # 2 models x GCG steps 1, 2 after the 3-step LoRA cell
    cells = {Path(r).name: r for runs in study["lora"] for r in runs.values()}
    gcg_runs = {Path(r).name: r for r in study["gcg"]}
    for p in chained:
        lora, gcg = p.parts
        assert (lora.kind, gcg.kind) == ("lora", "gcg") and p.attack_run == gcg.run
        lora_c = _json(Path(cells[lora.run]) / "compute.json")
        gcg_c = _json(Path(gcg_runs[gcg.run]) / "result.json")["compute"]
        assert lora.steps == 3 == lora_c["steps"] and gcg.steps == gcg_c["steps"] in (1, 2)
        assert lora.examples == lora_c["examples_seen"] == 3 * 2  # batch 2 x 3 steps
        # the prompts its loss was taken over, summed over steps (else its 2 prompts per step)
        assert gcg.examples == gcg_c.get("examples_seen", 2 * gcg.steps) > 0
        assert p.steps == 3 + gcg.steps and p.steps_label == f"3+{gcg.steps}"
        assert p.examples == lora.examples + gcg.examples
        assert p.flops == pytest.approx(lora_c["flops_estimate"] + gcg_c["flops"], rel=1e-12)
        assert p.compute("examples") == p.examples and p.compute("steps") == p.steps
        assert p.strength == f"lora+gcg n=4 steps=3+{gcg.steps}"
        plain = next(q for q in points if q.model == p.model and q.attack == "lora"
                     and q.defense == "none" and q.steps == 3)
        assert plain.parts == (lora,)  # the same LoRA cell, credited to its own condition
        assert plain.condition != p.condition
    # one N per model, whatever the run loaded (an adapter's weights are not the model's)
    for model in study["models"]:
        assert len({(p.n_params, p.n()) for p in points if p.model == model}) == 1
    small, big = (next(p.n() for p in points if p.model == m) for m in study["models"])
    assert small < big
    data = Gathered.from_points(points, "rrr", "refused")
    specs, _ = compute_specs(data, interaction=False, c0=None)
    for s in specs:
        kinds = {data.points[j].attack for j in s.runs if data.points[j].attacked}
        assert kinds == {s.group.rsplit(" ", 1)[-1] if "[" not in s.group else "lora"}
    groups = {s.group for s in specs}
    for m in study["models"]:
        assert {compute_group(m, "lora", "none"), compute_group(m, "lora+gcg", "none"),
                compute_group(m, "lora", "steer")} <= groups


def _labelled(study: dict[str, Any], **kw: Any) -> list[Any]:
    """The study's points with refusal labels drawn at random, a rate per run in 0.3-0.7."""
    from refusalscope.study.points import gather_points

    rng = np.random.default_rng(7)
    return [replace(p, refused=(rng.random(len(p.ids)) < rng.uniform(0.3, 0.7)).astype(float))
            for p in gather_points(study["gens"], **kw)]


def test_every_panel_draws_the_fit_of_its_attack_and_defense(study: dict[str, Any],
                                                               tmp_path: Path) -> None:
    from refusalscope.study.figures import FIGURES_JSON, plot_all
    from refusalscope.study.fit import FitConfig, fit_metric

    points = _labelled(study)
    families = {("lora", "none"): "lora", ("lora", "steer"): "lora [steer]",
                ("lora+gcg", "none"): "lora+gcg"}
    for x in ("both", "compute"):
        result = fit_metric(points, FitConfig("rrr", x, n_boot=20))
        figs = plot_all(result, tmp_path / x)
        assert json.loads((tmp_path / x / FIGURES_JSON).read_text()) == [
            {k: getattr(p, k) for k in ("figure", "panel", "series", "fit", "why")}
            for p in figs.panels]
        for axis in ("flops", "examples"):
            drawn = [p for p in figs.panels if p.figure == f"rrr_vs_{axis}"]
            for model in study["models"]:
                got = {p.series: p.fit for p in drawn if p.panel == model}
                want = {label: (joint_group(*kd) if x == "both" else compute_group(model, *kd))
                        for kd, label in families.items()}
                assert set(got) == set(want), (x, axis, got)
                for label, group in want.items():  # its own fit, on this panel's C axis
                    assert got[label] is not None and got[label].endswith(f"| {group}")
                    assert f"log C[{axis}]" in got[label]
                assert len(set(got.values())) == 3
        heat = {p.panel for p in figs.panels if p.figure == "rrr_heatmap"}
        assert heat == {f"{m} | {f}" for m in study["models"] for f in families.values()}
        if x == "both":
            size = {p.series: p for p in figs.panels if p.figure == "rrr_vs_size"}
            for strength, p in size.items():
                if strength == "no attack":  # the lora and lora+gcg joint fits both hold it
                    assert p.fit is None and p.why == "2 joint fits share this baseline"
                    continue
                kind = strength.split()[0]
                defense = "steer" if strength.endswith("[steer]") else "none"
                assert p.fit.endswith(f"| {joint_group(kind, defense)}"), (strength, p.fit)
    # one fitted C axis (--c-axis steps): the compute panels and the size curves use it
    figs = plot_all(fit_metric(points, FitConfig("rrr", "both", n_boot=20, c_axis="steps")),
                    tmp_path / "steps")
    assert {p.figure for p in figs.panels} == {"rrr_vs_size", "rrr_vs_steps", "rrr_heatmap"}
    assert all("log C[steps]" in p.fit for p in figs.panels
               if p.figure != "rrr_heatmap" and p.series != "no attack")


def test_heatmap_never_overwrites_a_cell(study: dict[str, Any], tmp_path: Path) -> None:
    from copy import copy

    from refusalscope.study.figures import plot_heatmap
    from refusalscope.study.fit import FitConfig, fit_metric

    result = fit_metric(_labelled(study), FitConfig("rrr", "compute", n_boot=10))
    steered = {(c["model"], c["n_data"], c["steps"]) for c in result.cells
               if c["defense"] == "steer"}
    plain = {(c["model"], c["n_data"], c["steps"]) for c in result.cells
             if c["attack"] == "lora" and c["defense"] == "none"}
    assert steered == plain  # the same grid cells: once they shared one heatmap cell
    twice = copy(result)
    dup = next(c for c in result.cells if c["family"] == "lora")
    twice.cells = [*result.cells, {**dup, "strength": dup["strength"] + " again"}]
    with pytest.raises(ValueError, match=r"\| lora: two conditions share one"):
        plot_heatmap(twice, tmp_path)


def test_controls_are_left_out_of_size_fits(study: dict[str, Any]) -> None:
    from refusalscope.study.fit import FitConfig, fit_metric

    small = study["models"][0]
    points = _labelled(study, controls=[Path(small).name])
    assert {p.model for p in points if p.control} == {small}
    with pytest.raises(UserError, match="control .never refuses., left out"):
        fit_metric(points, FitConfig("rrr", "both", n_boot=10))
    kept = fit_metric(points, FitConfig("rrr", "both", n_boot=10, include_controls=True))
    assert all(len(f.spec.runs) > 0 for f in kept.fits)
    per_model = fit_metric(points, FitConfig("rrr", "compute", n_boot=10))
    assert any(f.spec.group.startswith(small) for f in per_model.fits)  # compute fits keep it
    assert {c["model"]: c["control"] for c in per_model.cells}[small] is True
    total = fit_metric(points, FitConfig("rrr", "both", n_boot=10, include_controls=True,
                                         n_kind="total"))
    assert {c["n"] for c in total.cells} == {p.n_released for p in points}
    assert total.to_dict()["config"]["n_kind"] == "total"
