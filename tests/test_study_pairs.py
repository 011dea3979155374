"""`[pairs]` in a study spec: made once per generator, fed to every LoRA cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pairs_fixtures import write_built_all
from study_fixtures import make_study
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.errors import UserError
from refusalscope.study.executor import node_dir, study_dir
from refusalscope.study.graph import expand
from refusalscope.study.spec import load_spec, parse_spec

BASE = {"name": "p", "models": ["smollm2-135m", "qwen2.5-coder-0.5b"],
        "attacks": {"lora": {"n_data": [8, 16], "steps": [1]},
                    "own": {"kind": "lora", "n_data": [4], "data": "/x/pairs.jsonl"}}}


def _spec(pairs: dict | None = None, **top):  # type: ignore[no-untyped-def]
    return parse_spec({**BASE, **top, **({"pairs": pairs} if pairs is not None else {})})


def test_one_pairs_node_feeds_every_lora_cell_without_own_data():
    spec = _spec({"generator": "smollm2-135m", "samples": 2})
    assert spec.pairs["n"] == 16 and spec.pairs["steer"] == "ablate"
    assert parse_spec(spec.to_dict()).pairs == spec.pairs
    nodes = expand(spec)
    made = [n for n in nodes if n.kind == "pairs"]
    assert len(made) == 1 and made[0].params["model"] == "smollm2-135m"
    sweep = {n.id: n for n in nodes}[made[0].inputs["directions"]]
    assert sweep.kind == "probe-sweep" and sweep.params["model"] == "smollm2-135m"
    lora = [n for n in nodes if n.kind == "attack-lora"]
    fed = [n for n in lora if n.inputs.get("pairs") == made[0].id]
    assert len(lora) == 6 and len(fed) == 4  # 2 models x 2 n_data; the `own` cells keep data
    assert all(n.params["data"] == "/x/pairs.jsonl" for n in lora if n not in fed)
    order = [n.id for n in nodes]
    assert all(order.index(made[0].id) < order.index(n.id) for n in fed)


def test_no_pairs_table_no_pairs_node_and_steer_forms(tmp_path):
    assert not [n for n in expand(_spec()) if n.kind == "pairs"]
    none = [n for n in expand(_spec({"steer": "none", "n": 5})) if n.kind == "pairs"][0]
    assert none.inputs == {} and none.params["n"] == 5
    (tmp_path / "d.h5").write_bytes(b"x")
    spec = parse_spec({**BASE, "pairs": {"steer": "ablate:d.h5"}}, base=tmp_path)
    assert spec.pairs["steer"] == f"ablate:{tmp_path / 'd.h5'}"


@pytest.mark.parametrize("pairs, attacks, needle", [
    ({"sampels": 2}, None, "unknown key 'sampels' in the spec (at pairs.sampels)"),
    ({"samples": 0}, None, "pairs.samples must be a positive integer"),
    ({"temperature": 0}, None, "--temperature must be > 0"),
    ({"steer": ""}, None, "pairs.steer must be"),
    ({}, {}, "[pairs] feeds LoRA attacks"),
])
def test_bad_pairs_table(pairs, attacks, needle):
    raw = {**BASE, "pairs": pairs, **({"attacks": attacks} if attacks is not None else {})}
    with pytest.raises(UserError) as e:
        parse_spec(raw)
    assert needle in str(e.value)


def test_seed_plan_uses_pairs():
    spec = load_spec("seed-plan")
    assert spec.pairs is not None and spec.pairs["n"] == 2000
    nodes = expand(spec)
    made = [n for n in nodes if n.kind == "pairs"]
    lora = [n for n in nodes if n.kind == "attack-lora"]
    assert len(made) == 1 and lora and all(n.inputs["pairs"] == made[0].id for n in lora)


PAIRS_SPEC = """
name = "tiny-pairs"
seeds = [0]
scorers = ["heuristic"]
drift = false
[eval]
prompts = "prompts.jsonl"
n = 4
max_new_tokens = 6
batch_size = 4
[[models]]
name = "tiny-llama"
[attacks.lora]
n_data = [3]
steps = [1]
max_len = 48
batch_size = 2
[pairs]
generator = "tiny-llama"
steer = "none"
samples = 2
max_new_tokens = 24
temperature = 1.0
scorer = "heuristic"
"""


def test_study_run_trains_on_made_pairs(tmp_path: Path):
    write_built_all()
    spec_path = make_study(tmp_path / "s", PAIRS_SPEC)
    res = CliRunner().invoke(app, ["study", "run", str(spec_path)])
    assert res.exit_code == 0, res.output
    spec = load_spec(str(spec_path))
    nodes = {n.kind: n for n in expand(spec)}
    study = study_dir(spec.name)
    made = json.loads((node_dir(study, nodes["pairs"]) / "node.json").read_text())["outputs"]
    assert made["kept"] >= 3 and Path(made["pairs"]).is_file()
    lora = json.loads((node_dir(study, nodes["attack-lora"]) / "node.json").read_text())
    cell = json.loads((study / lora["outputs"]["runs"]["1"] / "manifest.json").read_text())
    assert cell["config"]["data_file"] == made["pairs"]
    kept = [json.loads(line) for line in Path(made["pairs"]).read_text().splitlines()]
    first3 = [r["id"] for r in kept if r["kept"]][:3]
    assert cell["extra"]["pairs"]["ids"] == first3
