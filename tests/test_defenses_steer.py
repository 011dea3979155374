"""Steering defense core: the alpha selection rules and the config."""

from __future__ import annotations

import json

import pytest

from refusalscope.defenses.steer import SteerDefenseConfig, select_alpha
from refusalscope.errors import UserError

TABLE = [{"alpha": 0.0, "rrr": 0.2, "over_refusal": 0.0},
         {"alpha": 2.0, "rrr": 0.7, "over_refusal": 0.1},
         {"alpha": 4.0, "rrr": 0.95, "over_refusal": 0.3},
         {"alpha": 8.0, "rrr": 1.0, "over_refusal": 0.9}]


def test_margin_rule_takes_the_best_difference_and_smallest_on_ties():
    assert select_alpha(TABLE)[0] == 4.0  # 0.65 beats 0.6 and 0.2
    tie = [{"alpha": 3.0, "rrr": 0.5, "over_refusal": 0.0},
           {"alpha": 1.0, "rrr": 0.5, "over_refusal": 0.0}]
    assert select_alpha(tie)[0] == 1.0


def test_target_rule_smallest_alpha_reaching_target_else_margin():
    assert select_alpha(TABLE, "target", 0.7) == (2.0, "target: smallest alpha with RRR >= 0.7")
    alpha, why = select_alpha(TABLE[:2], "target", 0.9)
    assert alpha == 2.0 and why.startswith("no alpha reached RRR 0.9; margin")


def test_config_round_trip_and_validation():
    cfg = SteerDefenseConfig(model="m", directions="d.h5", alphas=(4, 0, 2, 2), layers=(1, 2))
    assert cfg.alphas == (0.0, 2.0, 4.0)
    assert SteerDefenseConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(UserError, match="needs a directions file"):
        SteerDefenseConfig(model="m", directions=None)
    with pytest.raises(UserError, match="--rule"):
        SteerDefenseConfig(model="m", directions="d.h5", rule="x")
    with pytest.raises(UserError, match="--target"):
        SteerDefenseConfig(model="m", directions="d.h5", target=0)
