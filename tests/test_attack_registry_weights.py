"""A weights attack registered by a newcomer works in a study like LoRA does.

The toy attack below (`ScaleAttack`: one layer's attention output projection times a factor,
saved as a one-tensor safetensors file) is the whole module a newcomer writes; `register(...)`
is the registry line. Its `run` makes the artefact and its `apply` the attacked model; the
study runs it as `attack-scale` -> generate from the model `apply` makes -> score, with no
code naming it, and plans, reports and chains it from the registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.attacks.base import RESULT_KEYS, AttackResult, ConfigDict
from refusalscope.attacks.registry import REGISTRY, register
from refusalscope.cli.app import app
from refusalscope.errors import UserError
from study_fixtures import TINY_SPEC


# ---- the toy weights attack: everything a new attack needs --------------------------------
@dataclass(frozen=True)
class ScaleConfig(ConfigDict):
    factor: float = 0.0  # 0: the layer's attention adds nothing to the residual stream
    layer: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.factor < 0 or self.layer < 0:
            raise UserError("--factor and --layer must be at least 0")


def _weight_name(layer: int) -> str:
    return f"model.layers.{layer}.self_attn.o_proj.weight"


class ScaleAttack:
    name, kind, config_cls, log_file, work = "scale", "weights", ScaleConfig, "s.jsonl", "prefill"
    study_grid, study_fixed = ("factor",), ("layer", "n", "max_new_tokens")
    study_defaults = {"n": 2, "max_new_tokens": 3}

    def cost(self, cfg, model_info, n_requests=1):  # type: ignore[no-untyped-def]
        return float(model_info.body)  # an upper bound: one multiply per body weight

    def resources(self, cfg):  # type: ignore[no-untyped-def]
        return {"cpus": 1, "gpus": 0}

    def run(self, handle, requests, cfg, *, run=None, progress=None,  # type: ignore[no-untyped-def]
            batch_size=None):
        import tempfile

        from safetensors.torch import save_file

        from refusalscope.compute import Ledger

        path = run.file("scaled.safetensors") if run is not None else \
            Path(tempfile.mkdtemp()) / "scaled.safetensors"
        w = dict(handle.model.named_parameters())[_weight_name(cfg.layer)].detach()
        save_file({_weight_name(cfg.layer): (w * cfg.factor).contiguous()}, str(path))
        return AttackResult(self.name, self.kind, cfg.to_dict(), {"weights": str(path)},
                            Ledger().to_dict())

    def apply(self, handle, result, requests):  # type: ignore[no-untyped-def]
        import copy

        from safetensors.torch import load_file

        from refusalscope.models.handle import ModelHandle

        model = copy.deepcopy(handle.model)  # the bare model stays as it was (the baseline)
        model.load_state_dict(load_file(result.artefact["weights"]), strict=False)
        return ModelHandle(model, handle.tokenizer, handle.name, source=handle.source)
# ---- end of the toy attack -----------------------------------------------------------------


@pytest.fixture
def scale_attack():  # type: ignore[no-untyped-def]
    register(ScaleAttack())  # the one registry line
    yield REGISTRY["scale"]
    REGISTRY.pop("scale")


# the tiny study's model, prompts and eval, with the toy attack instead of LoRA
STUDY = TINY_SPEC.split("[attacks.lora]")[0] + "[attacks.scale]\nfactor = [0.0, 1.0]\n"


def _rows(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _by_hand(model: str, prompts: str, factor: float, ev: dict[str, int]) -> list[str]:
    """Replies of the model with the layer scaled in memory, as the study's generate asks."""
    from refusalscope.generation import GenerateConfig, generate_rows, load_prompts
    from refusalscope.models.handle import ModelHandle

    handle = ModelHandle.load(model)
    w = dict(handle.model.named_parameters())[_weight_name(0)]
    w.data.mul_(factor)
    cfg = GenerateConfig(model=model, n=ev["n"], prompts_file=prompts,
                         max_new_tokens=ev["max_new_tokens"])
    return [r["response"] for r in generate_rows(handle, load_prompts(cfg), cfg)]


def test_toy_weights_attack_in_a_tiny_study(scale_attack, tmp_path) -> None:
    from defense_fixtures import write_built_all
    from study_fixtures import make_study

    from refusalscope.runs import Run
    from refusalscope.study.chain import attack_parts, kind_of
    from refusalscope.study.executor import record, study_dir
    from refusalscope.study.graph import expand
    from refusalscope.study.nodes import NODE_KINDS, run_attack_node
    from refusalscope.study.plan import estimate, params_for
    from refusalscope.study.report import results
    from refusalscope.study.spec import load_spec

    write_built_all()  # the attack node's attack-train requests
    spec = load_spec(str(make_study(tmp_path / "s", STUDY)))
    nodes = expand(spec)
    atks = [n for n in nodes if n.kind == "attack-scale"]
    assert sorted(n.params["factor"] for n in atks) == [0.0, 1.0]
    assert NODE_KINDS["attack-scale"] is run_attack_node
    model = spec.models[0].name
    body = params_for(model).body  # type: ignore[union-attr]
    assert all(c.flops == body for c in estimate(nodes) if c.node.kind == "attack-scale")
    res = CliRunner().invoke(app, ["study", "run", str(tmp_path / "s" / "tiny.toml")])
    assert res.exit_code == 0, res.output
    assert "0 failed" in res.output
    study = study_dir("tiny")
    recs = {n.id: record(study, n) for n in nodes}
    assert all(recs.values()), [n.label for n in nodes if not recs[n.id]]
    base = next(n for n in nodes if n.kind == "generate" and not n.inputs)
    base_replies = [g["response"] for g in
                    _rows(Path(recs[base.id]["outputs"]["run"]) / "generations.jsonl")]
    prompts = str(tmp_path / "s" / "prompts.jsonl")
    for gen in (n for n in nodes if n.kind == "generate" and "attack" in n.inputs):
        atk = next(n for n in atks if n.id == gen.inputs["attack"])
        atk_run = recs[atk.id]["outputs"]["run"]  # type: ignore[index]
        result = json.loads((Path(atk_run) / "result.json").read_text())
        assert set(RESULT_KEYS) <= set(result) and result["kind"] == "weights"
        assert Path(result["artefact"]["weights"]).is_file()
        assert result["summary"]["requests"]["attacked"]["n"] == 2
        run = Run.open(recs[gen.id]["outputs"]["run"])  # type: ignore[index]
        assert run.manifest.config["attack_run"] == atk_run
        assert kind_of(attack_parts(run)) == "scale"
        replies = [g["response"] for g in _rows(run.path / "generations.jsonl")]
        assert [g["prompt"] for g in _rows(run.path / "generations.jsonl")] == \
            [g["prompt"] for g in _rows(Path(recs[base.id]["outputs"]["run"])  # type: ignore[index]
                                        / "generations.jsonl")]
        want = _by_hand(model, prompts, atk.params["factor"], spec.eval)
        assert replies == want
        if atk.params["factor"] == 1.0:
            assert replies == base_replies  # the weights unchanged: the baseline's replies
        else:
            assert replies != base_replies  # the layer silenced: other replies
    rows = results(nodes, study)
    assert sorted(r["attack"] for r in rows) == ["none", "scale", "scale"]


def test_weights_attack_graph_drift_and_after(scale_attack, tmp_path) -> None:
    """With drift, the attacked replies are compared with the baseline's (same prompts); a
    prompt attack cannot follow a weights attack other than LoRA yet."""
    from study_fixtures import make_study

    from refusalscope.study.graph import expand
    from refusalscope.study.spec import load_spec

    spec = load_spec(str(make_study(tmp_path / "d", STUDY.replace("drift = false",
                                                                   "drift = true"))))
    nodes = expand(spec)
    base = next(n for n in nodes if n.kind == "generate" and not n.inputs)
    gens = [n for n in nodes if n.kind == "generate" and "attack" in n.inputs]
    assert len(gens) == 2 and all(g.inputs["baseline"] == base.id for g in gens)
    after = STUDY + '[attacks.gcg]\nafter = "scale"\n'
    with pytest.raises(UserError, match="only a lora attack can be followed"):
        load_spec(str(make_study(tmp_path / "a", after)))


def test_steering_needs_lora_cells_not_any_weights_attack(scale_attack, tmp_path) -> None:
    """A runtime defense follows LoRA cells only: a spec whose one weights attack is another
    (no cells) is a one-line error, not a study that silently has no defense nodes."""
    from study_fixtures import make_study

    from refusalscope.study.spec import load_spec

    path = make_study(tmp_path / "s", STUDY + "[defenses.steer]\n")
    with pytest.raises(UserError, match="the steer defense acts after a LoRA attack's cells"):
        load_spec(str(path))
    res = CliRunner().invoke(app, ["study", "plan", str(path)])
    assert res.exit_code == 2 and "error: " in res.output and "kind lora" in res.output
