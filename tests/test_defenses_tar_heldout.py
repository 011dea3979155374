"""TAR against held-out adversaries: the adversary distribution TAR trains against, the
comparison of each LoRA attack with TAR's adversary (data, lr, steps, rank/modules), the shipped
`defenses` spec, and a tiny study whose report labels in-distribution vs held-out cells."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.attacks.pairs import Pair, encode_pair, load_pairs
from refusalscope.compute import Ledger
from refusalscope.defenses.tar import (
    ATTACK, TarConfig, adversary, attach_adapters, inner_attack, param_counts,
)
from refusalscope.defenses.tar_heldout import (
    STEPS_FACTOR, compare, compare_spec, data_relation, heldout_rows, markdown,
)
from refusalscope.errors import UserError
from refusalscope.models.tiny import tiny_handle
from refusalscope.study.spec import load_spec
from defense_fixtures import write_built_all
from study_fixtures import make_study

PAIRS = [Pair(f"p{i}", f"Tell me a story number {i}.", f"Sure, here is story {i}.", "t")
         for i in range(4)]


def test_adversary_drawn_per_outer_step_and_reproducible():
    fixed = TarConfig(model="m", inner_lr=1e-3, inner_steps=4)
    assert {adversary(fixed, s).to_dict()["lr"] for s in range(8)} == {1e-3}
    cfg = TarConfig(model="m", adv_lrs=(1e-4, 1e-3), adv_ranks=(4, 16), adv_steps=(2, 8),
                    adv_modules=("attn", "mlp", "all"))
    drawn = [adversary(cfg, s) for s in range(40)]
    assert drawn == [adversary(cfg, s) for s in range(40)]  # seeded by (seed, step)
    assert {a.lr for a in drawn} == {1e-4, 1e-3} and {a.rank for a in drawn} == {4, 16}
    assert {a.steps for a in drawn} == {2, 8} and {a.modules for a in drawn} == {"attn", "mlp",
                                                                                   "all"}
    assert all(a.alpha == 2 * a.rank for a in drawn)  # inner_alpha / inner_rank kept
    assert cfg.sampled and not fixed.sampled and cfg.max_inner_steps == 8
    again = TarConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(UserError, match="adv-modules"):
        TarConfig(model="m", adv_modules=("ffn",))
    with pytest.raises(UserError, match="adv-lrs"):
        TarConfig(model="m", adv_lrs=(0.0,))


def test_drawn_adversary_trains_its_own_rank_and_modules():
    h = tiny_handle("llama")
    cfg = TarConfig(model="tiny", n_data=4, batch_size=2, max_len=48, adv_ranks=(2, 6),
                    adv_steps=(1, 2), adv_modules=("mlp", "attn"), adv_lrs=(1e-2,))
    model = attach_adapters(h.model, cfg)
    enc = [encode_pair(h, p, cfg.max_len) for p in PAIRS]
    log = Ledger(param_counts(model, ATTACK), steps=0, examples_seen=0)
    for step in range(6):
        adv = adversary(cfg, step)
        losses = inner_attack(model, enc, cfg, step, h, log)
        assert len(losses) == adv.steps
        a_mats = {n: p for n, p in model.named_parameters()
                  if f".lora_A.{ATTACK}." in n and p.requires_grad}
        leaves = {n.split(".lora_A.")[0].rsplit(".", 1)[-1] for n in a_mats}
        want = {"mlp": {"gate_proj", "up_proj", "down_proj"},
                "attn": {"q_proj", "k_proj", "v_proj", "o_proj"}}[adv.modules]
        assert leaves == want and all(p.shape[0] == adv.rank for p in a_mats.values())
    assert log.steps == sum(adversary(cfg, s).steps for s in range(6))


class _Atk:
    def __init__(self, name, lr, steps, rank, modules=None, **fixed):
        self.name, self.kind, self.after = name, "lora", None
        self.grid = {"n_data": (4,), "steps": tuple(steps), "lr": (lr,), "rank": (rank,),
                     "alpha": (16.0,)}
        self.fixed = {"target_kind": "auto", "data": None, "target_modules": modules, **fixed}


TAR = {"inner_lr": 1e-3, "inner_rank": 8, "inner_steps": 4, "n_data": 4, "seed": 0,
       "target_kind": "auto", "data": None}


def test_compare_labels_each_axis():
    own = _Atk("own", 1e-3, [4], 8)
    assert compare(own, TAR, "same", 4).label == "in-distribution"
    assert compare(own, TAR, "same", 16).differs == ("steps",)
    held = _Atk("held", 2e-4, [16], 16, ["gate_proj", "up_proj"])
    c = compare(held, TAR, "disjoint", 16)
    assert c.label == "held-out" and c.differs == ("data", "lr", "steps", "rank/modules")
    assert compare(held, TAR, "overlap", 16).label == "partial"  # shared pairs: not held out
    assert compare(held, TAR, "disjoint", 4 * STEPS_FACTOR - 1).differs == (
        "data", "lr", "rank/modules")
    same_rank_other_modules = _Atk("m", 2e-4, [16], 8, ["down_proj"])
    assert "rank/modules" in compare(same_rank_other_modules, TAR, "disjoint", 16).differs
    drawn = dict(TAR, adv_lrs=[1e-3, 2e-4])  # an lr TAR drew is not held out
    assert "lr" not in compare(held, drawn, "disjoint", 16).differs


def _write_pairs(path: Path, start: int, n: int) -> str:
    path.write_text("".join(json.dumps({"id": f"u{i}", "prompt": f"Tell me secret {i}",
                                        "response": f"Sure, {i}."}) + "\n"
                            for i in range(start, start + n)))
    return str(path)


def test_data_relation_on_loaded_pairs(tmp_path):
    a = load_pairs(4, data_file=_write_pairs(tmp_path / "a.jsonl", 0, 4))
    b = load_pairs(4, data_file=_write_pairs(tmp_path / "b.jsonl", 4, 4))
    c = load_pairs(4, data_file=_write_pairs(tmp_path / "c.jsonl", 2, 4))
    assert data_relation(a, a) == "same" and data_relation(a, b) == "disjoint"
    assert data_relation(a, c) == "overlap"
    renamed = [Pair("x" + p.id, p.prompt.upper() + "!", p.response, p.source) for p in a]
    assert data_relation(a, renamed) == "same"  # the same prompts under other ids
    assert data_relation(a, renamed[:2] + b[:2]) == "overlap"


def test_data_relation_matches_prompts_as_the_eval_guard_does():
    """Two prompts are the same for TAR's held-out check exactly when `attacks.pairs.prompt_key`
    (how training prompts are kept off `eval`) says so: one normaliser, no private copy."""
    from refusalscope.attacks.pairs import prompt_key
    from refusalscope.defenses import tar_heldout

    assert not hasattr(tar_heldout, "_norm")
    one = [Pair("a", "How do I, pick  a LOCK?", "r", "s")]
    two = [Pair("b", "how do i pick a lock", "r", "s")]
    assert prompt_key(one[0].prompt) == prompt_key(two[0].prompt)
    assert data_relation(one, two) == "same"


def test_shipped_defenses_spec_has_in_distribution_and_two_held_out_attacks():
    spec = load_spec("defenses")
    tar = next(d.params for d in spec.defenses if d.kind == "tar")
    lora = {a.name: a for a in spec.attacks if a.kind == "lora"}
    own = lora["lora"]  # TAR's adversary: its pairs, lr, rank, attention modules
    assert (own.grid["lr"], own.grid["rank"], own.grid["n_data"]) == (
        (tar["inner_lr"],), (tar["inner_rank"],), (tar["n_data"],))
    assert own.fixed["target_kind"] == tar["target_kind"] and own.fixed["data"] is None
    assert own.fixed.get("target_modules") is None and tar["inner_steps"] in own.grid["steps"]
    assert compare(own, tar, "same", tar["inner_steps"]).label == "in-distribution"
    held = [a for n, a in lora.items() if n != "lora"]
    assert len(held) >= 2
    for a in held:
        # AdvBench targets of attack-train: another pool than TAR's full responses
        assert a.fixed["target_kind"] == "advbench-target" != tar["target_kind"]
        for s in a.grid["steps"]:
            assert compare(a, tar, "disjoint", s).label == "held-out", (a.name, s)
    assert len({(a.grid["lr"], a.grid["rank"], tuple(a.fixed["target_modules"]))
                for a in held}) == len(held)


@pytest.mark.slow
def test_shipped_spec_pairs_are_disjoint_on_the_built_data(data_home, monkeypatch):
    monkeypatch.setenv("REFUSALSCOPE_HOME", str(data_home))
    comps = compare_spec(load_spec("defenses"))
    assert comps[("lora", 4)].label == "in-distribution"
    assert {c.label for (n, _), c in comps.items() if n != "lora"} == {"held-out"}
    assert {c.data for (n, _), c in comps.items() if n != "lora"} == {"disjoint"}


HELDOUT_SPEC = """
name = "tiny-heldout"
seeds = [0]
scorers = ["heuristic"]
drift = false
[eval]
prompts = "prompts.jsonl"
n = 4
max_new_tokens = 4
batch_size = 4
[[models]]
name = "tiny-llama"
[attacks.lora]
n_data = [4]
steps = [1]
max_len = 32
batch_size = 2
data = "pairs.jsonl"
[attacks.heldout]
kind = "lora"
n_data = [4]
steps = [4]
lr = [1e-3]
rank = [4]
alpha = [8.0]
target_modules = ["gate_proj", "up_proj", "down_proj"]
max_len = 32
batch_size = 2
data = "other.jsonl"
[defenses.tar]
outer_steps = 1
inner_steps = 1
n_data = 4
n_retain = 2
retain_new_tokens = 3
batch_size = 2
max_len = 32
data = "pairs.jsonl"
"""


def test_tiny_study_report_labels_in_distribution_and_held_out(tmp_path):
    from refusalscope.study.executor import study_dir
    from refusalscope.study.graph import expand

    root = tmp_path / "s"
    path = make_study(root, HELDOUT_SPEC)
    (root / "other.jsonl").write_text("".join(
        json.dumps({"prompt": f"Describe hidden place {i}", "response": f"Sure, place {i}."})
        + "\n" for i in range(4)))
    write_built_all()
    res = CliRunner().invoke(__import__("refusalscope.cli.app", fromlist=["app"]).app,
                             ["study", "run", str(path)])
    assert res.exit_code == 0, res.output
    spec = load_spec(str(path))
    rows = heldout_rows(spec, expand(spec), study_dir(spec.name))
    cells = {(r["label"], r["attack"], r["model"]) for r in rows}
    assert cells == {("baseline", "none", "undefended"), ("baseline", "none", "TAR"),
                     ("in-distribution", "lora", "undefended"), ("in-distribution", "lora", "TAR"),
                     ("held-out", "heldout", "undefended"), ("held-out", "heldout", "TAR")}
    for r in rows:
        assert r["n"] == 4 and 0 <= r["ci"][0] <= r["rrr"] <= r["ci"][1] <= 1
        assert r["wilson95"][0] <= r["rrr"] <= r["wilson95"][1]
    held = next(r for r in rows if r["label"] == "held-out")
    assert (held["modules"], held["lr"], held["steps"], held["data"]) == (
        "gate_proj,up_proj,down_proj", 1e-3, 4, "disjoint")
    table = markdown(rows)
    assert "| in-distribution | lora |" in table and "| held-out | heldout |" in table
    assert table.count("\n") == len(rows) + 2

