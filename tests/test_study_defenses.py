"""Defenses in a study: spec tables, graph nodes (defense x attack x model), a tiny end-to-end
run, and fit points that carry the defense."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.errors import UserError
from refusalscope.study.graph import expand
from refusalscope.study.spec import load_spec
from defense_fixtures import write_built_all
from study_fixtures import TINY_SPEC, make_study

DEFENSES = """
[defenses.tar]
outer_steps = 1
inner_steps = 1
n_data = 4
n_retain = 2
retain_new_tokens = 3
batch_size = 2
max_len = 32
data = "pairs.jsonl"
[defenses.steer]
alphas = [0, 4]
n = 2
max_new_tokens = 3
sweep_n = 3
sweep_n_val = 2
positions = "last"
"""


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    return make_study(tmp_path / "s", TINY_SPEC + DEFENSES)


def test_spec_reads_defenses_with_defaults(spec_path: Path) -> None:
    spec = load_spec(str(spec_path))
    tar, steer = spec.defenses
    assert (tar.kind, steer.kind) == ("tar", "steer")
    assert tar.params["outer_lr"] == 1e-4 and tar.params["inner_steps"] == 1
    assert tar.params["data"] == str(spec_path.parent / "pairs.jsonl")
    assert steer.params["alphas"] == [0, 4] and steer.params["rule"] == "margin"
    assert spec.to_dict()["defenses"]["tar"]["kind"] == "tar"


@pytest.mark.parametrize("extra, needle", [
    ("[defenses.tar]\nouter_stepz = 2\n", "unknown key 'outer_stepz' in the spec (at "
                                          "defenses.tar.outer_stepz)"),
    ("[defenses.x]\nkind = \"prayer\"\n", "unknown defense kind 'prayer' at defenses.x.kind"),
    ("[defenses.steer]\nalphas = []\n", "empty grid at defenses.steer.alphas"),
])
def test_spec_bad_defense_tables(tmp_path: Path, extra: str, needle: str) -> None:
    with pytest.raises(UserError) as e:
        load_spec(str(make_study(tmp_path / "s", TINY_SPEC + extra)))
    assert needle in str(e.value)


def test_steer_defense_needs_a_lora_attack(tmp_path: Path) -> None:
    no_lora = TINY_SPEC.split("[attacks.lora]")[0] + "[defenses.steer]\n"
    with pytest.raises(UserError, match="acts after a LoRA attack"):
        load_spec(str(make_study(tmp_path / "s", no_lora)))


def test_graph_has_defense_x_attack_x_model_nodes(spec_path: Path) -> None:
    nodes = expand(load_spec(str(spec_path)))
    kinds = [n.kind for n in nodes]
    assert kinds.count("defend-tar") == 1 and kinds.count("probe-sweep") == 1
    assert kinds.count("defend-steer") == 2  # one per LoRA cell (steps 1, 3)
    assert kinds.count("attack-lora") == 2  # the undefended and the TAR-defended model
    tar = next(n for n in nodes if n.kind == "defend-tar")
    defended = [n for n in nodes if n.inputs.get("defended") == tar.id]
    assert sorted(n.kind for n in defended) == ["attack-lora", "generate", "generate",
                                                "generate"]  # baseline + 2 cells
    steer_gen = [n for n in nodes if n.kind == "generate" and "steer" in n.inputs]
    assert len(steer_gen) == 2 and all(n.params["defense"] == "steer" for n in steer_gen)
    ds = {n.id: n for n in nodes if n.kind == "defend-steer"}
    assert {ds[n.inputs["steer"]].params["adapter_steps"] for n in steer_gen} == {1, 3}
    from refusalscope.study.plan import estimate

    costs = {c.node.kind: c for c in estimate(nodes)}
    assert all(costs[k].flops and costs[k].cpu_min for k in ("defend-tar", "probe-sweep",
                                                              "defend-steer"))
    # adding defenses leaves the undefended nodes as they were (content ids)
    plain = {n.id for n in expand(replace(load_spec(str(spec_path)), defenses=()))}
    assert plain <= {n.id for n in nodes} and len(plain) == 7


def test_study_runs_defenses_and_points_carry_them(spec_path: Path) -> None:
    from refusalscope.study.executor import record, study_dir
    from refusalscope.study.points import gather_points

    write_built_all()  # retain prompts (attack-train) and the direction split
    res = CliRunner().invoke(app, ["study", "run", str(spec_path)])
    assert res.exit_code == 0, res.output
    assert "22 ran, 0 already done, 0 failed" in res.output
    nodes = expand(load_spec(str(spec_path)))
    study = study_dir("tiny")
    out = {n.id: record(study, n)["outputs"] for n in nodes}  # type: ignore[index]
    gens = [out[n.id]["run"] for n in nodes if n.kind == "generate"]
    points = gather_points(gens)
    by = {(p.defense, p.strength) for p in points}
    assert ("none", "no attack") in by and ("tar", "no attack [tar]") in by
    assert {s for d, s in by if d == "steer"} == {"lora n=4 steps=1 [steer]",
                                                 "lora n=4 steps=3 [steer]"}
    assert {p.model for p in points if p.defense == "tar"} == {"tiny-llama+tar"}
    ds = next(n for n in nodes if n.kind == "defend-steer")
    search = json.loads((Path(out[ds.id]["run"]) / "search.json").read_text())
    assert search["split"] == "direction" and len(search["table"]) == 2
    from refusalscope.study.fitgroups import compute_specs
    from refusalscope.study.fitspec import Gathered

    specs, _ = compute_specs(Gathered.from_points(points, "rrr", "refused"), interaction=False,
                             c0=None)
    runs = {s.group.rsplit("/", 1)[-1]: {points[j].defense for j in s.runs}
            for s in specs if s.form != "loglog"}
    assert set(runs) == {"tiny-llama lora", "tiny-llama lora [steer]",
                         "tiny-llama+tar lora [tar]"}
    assert runs["tiny-llama lora"] == {"none"}
    assert runs["tiny-llama lora [steer]"] == {"steer", "none"}  # the undefended baseline
    assert runs["tiny-llama+tar lora [tar]"] == {"tar"}  # the defended model's own baseline
