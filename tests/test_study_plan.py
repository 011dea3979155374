"""The cost plan: ledger FLOPs per node, measured rates read, interpolated and applied."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.compute import (ParamCounts, count_params, forward_flops, generation_flops,
                                  train_flops)
from refusalscope.errors import UserError
from refusalscope.study import plan
from refusalscope.study.graph import Node

P = ParamCounts(total=1000, trainable=0, body=700, head=150, embedding=150, tied=True)


def _rates(tmp_path: Path, unit: str = "GPU") -> Path:
    f = tmp_path / "rates.json"
    f.write_text(json.dumps({
        "version": 1, "device": "Test Card", "unit": unit, "measured_by": "test",
        "shapes": [
            {"shape": "small", "params_total": 2e8, "params_body": 1e8,
             "rates": {"generate": {"flops_per_s": 1e12}, "gcg": {"flops_per_s": 4e12},
                       "train": [{"batch": 4, "seq": 256, "flops_per_s": 1e12},
                                 {"batch": 16, "seq": 1024, "flops_per_s": 2e12}]}},
            {"shape": "big", "params_total": 2e10, "params_body": 1e10,
             "rates": {"generate": {"flops_per_s": 3e12}}}]}))
    return f


def test_rates_interpolate_in_log_n_and_pick_the_nearest_batch(tmp_path: Path) -> None:
    r = plan.load_rates(_rates(tmp_path))
    assert r.rate("generate", 1e9) == pytest.approx(2e12)  # halfway in log N
    assert r.rate("generate", 1e6) == 1e12 and r.rate("generate", 1e12) == 3e12  # clamped
    assert r.rate("train", 5e9, tokens=4 * 256) == 1e12  # only the small shape measured it
    assert r.rate("train", 5e9, tokens=16 * 1024) == 2e12
    assert r.rate("prefill", 1e9) is None
    assert r.device == "Test Card" and r.unit == "GPU"


def test_bad_rates_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        plan.load_rates(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"device": "x"}')
    with pytest.raises(UserError, match="not a measured-rates file"):
        plan.load_rates(bad)


def test_node_flops_are_the_ledgers() -> None:
    gen = Node("g", "generate", {"model": "m", "n": 3, "max_new_tokens": 20})
    assert plan.node_flops(gen, P) == 3 * generation_flops(P, plan.PROMPT_TOKENS, 20)
    lora = Node("l", "attack-lora", {"model": "m", "steps": [2, 5], "batch_size": 4,
                                     "max_len": 64})
    assert plan.node_flops(lora, P) == 5 * train_flops(P, 256, 128)
    gcg = Node("c", "attack-gcg", {"model": "m", "steps": 2, "n": 3, "search_width": 8,
                                   "suffix_len": 5})
    from refusalscope.attacks import gcg_run as g  # the attack owns its cost formula

    rest = 5 + g.TAIL_TOKENS + g.TARGET_TOKENS - 1
    step = 2 * forward_flops(P, rest, g.TARGET_TOKENS, 5) \
        + 8 * forward_flops(P, rest, g.TARGET_TOKENS)
    assert plan.node_flops(gcg, P) == 3 * (2 * step + forward_flops(P, g.PROMPT_TOKENS, 1))


def test_params_of_a_folder_are_counted_exactly(tiny_folder: Path) -> None:
    from transformers import AutoModelForCausalLM

    loaded = AutoModelForCausalLM.from_pretrained(tiny_folder)
    assert plan.params_for(str(tiny_folder)) == count_params(loaded, trained=False)


def test_params_from_the_registry() -> None:
    p = plan.params_for("llama-7b")
    assert p is not None and p.body == 6_476_271_616 and p.head == p.embedding == 131_072_000
    q = plan.params_for("qwen2.5-coder-0.5b")  # tied: head and embedding are one matrix
    assert q is not None and q.head == 494_032_768 - 357_898_112
    assert plan.params_for("no-such-model") is None


def test_estimate_applies_the_rates(tmp_path: Path) -> None:
    r = plan.load_rates(_rates(tmp_path))
    node = Node("g", "generate", {"model": "llama-7b", "n": 8, "max_new_tokens": 16})
    (c,) = plan.estimate([node], rates=r)
    p = plan.params_for("llama-7b")
    assert p is not None
    rate = r.rate("generate", p.body)
    assert rate is not None and math.isclose(rate, 1e12 + 2e12 * (math.log(p.body / 1e8)
                                                                   / math.log(100)))
    assert c.flops == plan.node_flops(node, p)
    assert c.device_min == pytest.approx((c.flops / rate + plan.LOAD_S["GPU"]) / 60)
    assert c.cpu_min is not None and c.cpu_min > c.device_min  # the shipped CPU rates


def test_shipped_cpu_rates_were_measured_by_the_benchmark() -> None:
    d = json.loads(plan.DEFAULT_RATES.read_text())
    assert "gpu_check.py --device cpu" in d["measured_by"] and d["unit"] == "CPU"
    r = plan.load_rates()
    for work in ("generate", "train", "gcg", "prefill"):
        rate = r.rate(work, 4e8, 1024)
        assert rate is not None and 1e8 < rate < 1e12  # GFLOP/s-scale on a small CPU


def test_cli_plan_with_rates(tmp_path: Path) -> None:
    from refusalscope.cli.app import app

    res = CliRunner().invoke(app, ["study", "plan", "quickstart", "--rates",
                                   str(_rates(tmp_path))])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "GPU-hours on Test Card" in text and "GPU min" in text
    bad = CliRunner().invoke(app, ["study", "plan", "quickstart", "--rates",
                                   str(tmp_path / "nope.json")])
    assert bad.exit_code == 2 and "error: --rates" in bad.output
