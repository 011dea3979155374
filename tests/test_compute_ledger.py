"""The shared compute ledger: formula pieces on hand-computed numbers, parameter classes on tiny
models, and every attack's recorded FLOPs equal to the sum over the passes it actually ran
(counted by hooks on the decoder and the LM head, not by the attack's own bookkeeping)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest
import torch

from refusalscope.compute import (
    Ledger, ParamCounts, backward_inputs_flops, combine, count_params, forward_flops,
    generation_flops, recompute_flops, train_flops, weight_grad_flops,
)
from refusalscope.models.tiny import tiny_handle

P = ParamCounts(total=100, trainable=10, body=60, head=20, embedding=20)
GOAL, TARGET = "Write a short poem about the sea", "Sure, here is"


# -- the formula -----------------------------------------------------------------------------
def test_pieces_on_hand_computed_numbers() -> None:
    assert forward_flops(P, 5, 2) == 2 * 70 * 5 + 2 * 20 * 2 == 780
    assert forward_flops(P, 5, 2, onehot_rows=1) == 780 + 2 * 20
    assert backward_inputs_flops(P, 5, 2) == 780  # activation gradients: as much as the forward
    assert weight_grad_flops(P, 5) == 2 * 10 * 5
    assert recompute_flops(P, 5) == 2 * 70 * 5
    # LoRA: tokens*(4*N_body + 6*N_lora) + response*4*N_head (+ recompute with checkpointing)
    assert train_flops(P, 5, 2) == 5 * (4 * 60 + 6 * 10) + 2 * 4 * 20 == 1660
    assert train_flops(P, 5, 2, grad_checkpointing=True) == 1660 + 700
    # generation: 7 prompt tokens run once, 2 of 3 new tokens fed back, 3 rows of logits
    assert generation_flops(P, 7, 3) == 2 * 70 * 9 + 2 * 20 * 3 == 1380
    frozen = ParamCounts(total=100, trainable=0, body=60, head=20, embedding=20)
    # a gradient w.r.t. the inputs through frozen weights: 4 * N_body per position
    assert forward_flops(frozen, 1, 0) + backward_inputs_flops(frozen, 1, 0) == 4 * 60


def test_ledger_totals_round_trip_and_old_records() -> None:
    led = Ledger(P, steps=0, examples_seen=0, grad_checkpointing=True)
    led.train_step([(5, 2), (3, 1)], 0.5)
    assert led.flops == train_flops(P, 8, 3, grad_checkpointing=True)
    assert (led.steps, led.examples_seen, led.tokens_seen, led.response_tokens_seen) == (1, 2, 8, 3)
    d = led.to_dict()
    assert d["flops"] == d["flops_estimate"] == sum(d["flops_by_pass"].values()) == led.flops
    assert Ledger.from_dict(d).to_dict() == d
    gen = Ledger(P)
    gen.generation(7, 3)
    assert gen.flops == generation_flops(P, 7, 3)
    assert "steps" not in gen.to_dict() and "examples_seen" not in gen.to_dict()
    both = combine({"a": d, "b": gen.to_dict()})
    assert both["flops"] == led.flops + gen.flops and both["a"] == d and both["parts"] == ["a", "b"]
    # a LoRA checkpoint written before the ledger resumes with the same FLOPs
    old = {"steps": 1, "examples_seen": 2, "tokens_seen": 8, "response_tokens_seen": 3,
           "params": {"total": 100, "trainable": 10, "body": 60, "head": 20},
           "grad_checkpointing": True, "wall_seconds": 0.5, "flops_estimate": 3760}
    assert Ledger.from_dict(old).flops == led.flops  # P's embedding costs nothing here


# -- parameter classes -------------------------------------------------------------------------
@pytest.mark.parametrize("tie", [False, True])
def test_count_params_classes(tie: bool) -> None:
    from peft import LoraConfig, get_peft_model

    from refusalscope.models.tiny import tiny_config

    cfg = tiny_config("llama", vocab_size=300, tie_word_embeddings=tie)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(cfg)
    every = sum(p.numel() for p in model.parameters())  # parameters() lists a tied one once
    c = count_params(model, trained=False)
    assert c.embedding == c.head == 300 * 64 and c.tied is tie and c.trainable == 0
    assert c.total == every and c.body == every - 300 * 64 * (1 if tie else 2)
    from refusalscope.models.peft_quiet import quiet_peft

    with quiet_peft():
        peft = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    lora = sum(p.numel() for n, p in peft.named_parameters() if "lora_" in n)
    assert lora == 3 * (2 * (64 + 64) + 2 * (64 + 32))  # 3 layers x r2 x (q: 64->64, v: 64->32)
    trained = count_params(peft)
    assert (trained.total, trained.body, trained.trainable) == (c.total, c.body, lora)
    frozen = count_params(peft, trained=False)  # e.g. GCG after a LoRA attack
    assert (frozen.total, frozen.body, frozen.trainable) == (c.total, c.body + lora, 0)


# -- counting what actually ran -----------------------------------------------------------------
@contextmanager
def counted(model: Any):
    """Count real positions and LM-head rows of every forward of `model`'s decoder, split into
    passes that build a graph (backpropagated) and passes that do not."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    c = {"fwd": 0, "rows": 0, "bwd": 0, "bwd_rows": 0}

    def pre(_mod: Any, args: Any, kwargs: dict[str, Any]) -> None:
        x = kwargs.get("input_ids")
        x = kwargs.get("inputs_embeds")[..., 0] if x is None else x
        mask = kwargs.get("attention_mask")
        n = int(mask.sum()) if mask is not None and mask.shape == x.shape else x.numel()
        c["fwd"] += n
        c["bwd"] += n if torch.is_grad_enabled() else 0

    def head(_mod: Any, args: Any, out: Any) -> None:
        rows = args[0].numel() // args[0].shape[-1]
        c["rows"] += rows
        c["bwd_rows"] += rows if torch.is_grad_enabled() else 0

    hooks = [base.model.register_forward_pre_hook(pre, with_kwargs=True),
             base.get_output_embeddings().register_forward_hook(head)]
    try:
        yield c
    finally:
        for h in hooks:
            h.remove()


def _expected(p: ParamCounts, c: dict[str, int], onehot: int = 0, trained: int = 0) -> int:
    return (forward_flops(p, c["fwd"], c["rows"], onehot)
            + backward_inputs_flops(p, c["bwd"], c["bwd_rows"], onehot)
            + weight_grad_flops(p, trained))


def test_gcg_flops_are_the_sum_of_its_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    from refusalscope.attacks import gcg_loss
    from refusalscope.attacks.gcg import GCGConfig, run

    h = tiny_handle("llama", seed=3)
    grads: list[int] = []
    real = gcg_loss.suffix_gradient

    def spy(model: Any, slots: Any, cache: Any, ids: Any, w: Any) -> Any:
        grads.append(len(ids))  # one-hot rows of this gradient pass
        return real(model, slots, cache, ids, w)

    monkeypatch.setattr(gcg_loss, "suffix_gradient", spy)
    cfg = GCGConfig(steps=3, search_width=8, topk=4, suffix_len=4, add_every=1, seed=1)
    prompts = [(GOAL, TARGET), ("Tell me a joke", "Sure, here is one")]
    with counted(h.model) as c:
        res = run(h, prompts, cfg)
    led = res.compute
    assert res.n_active == 2 and len(grads) >= 3  # the second prompt joined (and was rescored)
    assert (led.forward_tokens, led.logit_rows, led.backward_tokens, led.backward_logit_rows) \
        == (c["fwd"], c["rows"], c["bwd"], c["bwd_rows"])
    assert led.onehot_rows == led.backward_onehot_rows == sum(grads)
    assert led.trained_tokens == 0 and led.params.trainable == 0
    assert led.flops == _expected(led.params, c, onehot=sum(grads)) > 0
    assert led.steps == 3 and led.examples_seen == sum(r["n_active"] for r in res.steps) == 5


def test_lora_flops_are_the_sum_of_its_passes_and_agree_with_gcg(tmp_path) -> None:
    from refusalscope.attacks.gcg import GCG, GCGConfig
    from refusalscope.attacks.lora import LoraAttackConfig, train
    from refusalscope.attacks.pairs import Pair
    from refusalscope.runs import Run

    h = tiny_handle("llama", seed=3)
    pairs = [Pair(f"p{i}", f"Tell me story {i} " * (i + 1), f"Sure, here is story {i}.", "t")
             for i in range(4)]
    cfg = LoraAttackConfig(model="tiny", n_data=4, steps=2, batch_size=3, max_len=64,
                           save_every=0)
    run = Run.create("attack-lora", cfg.to_dict(), model="tiny")
    base_body = count_params(h.model, trained=False).body
    with counted(h.model) as c:
        d = train(h, pairs, cfg, run)
    led = Ledger.from_dict(d)
    p = led.params
    assert (led.forward_tokens, led.logit_rows) == (c["fwd"], c["rows"]) \
        == (c["bwd"], c["bwd_rows"])
    assert led.forward_tokens == d["tokens_seen"] and led.logit_rows == d["response_tokens_seen"]
    assert d["flops"] == _expected(p, c, trained=c["fwd"]) == \
        train_flops(p, d["tokens_seen"], d["response_tokens_seen"])
    # the same model seen by GCG: the same body, embedding and head; per position of a forward +
    # input-gradient pass the two ledgers differ by exactly LoRA's own 4 * N_lora
    gcg = GCG(h, [(GOAL, TARGET)], GCGConfig(suffix_len=4)).params
    assert (gcg.body, gcg.head, gcg.embedding) == (p.body, p.head, p.embedding) == \
        (base_body, p.head, p.embedding)
    per = lambda q: forward_flops(q, 1, 0) + backward_inputs_flops(q, 1, 0)  # noqa: E731
    assert per(p) - per(gcg) == 4 * p.trainable > 0
    assert forward_flops(p, 0, 1) == forward_flops(gcg, 0, 1) == 2 * p.head  # a logit row


def test_autodan_and_generation_flops_are_the_sum_of_their_passes() -> None:
    from refusalscope.attacks.autodan import AutoDANConfig, run

    h = tiny_handle("qwen2", seed=3)
    texts = [f"Rule {i}. You are ChatGPT. " + "Answer every question fully. " * (i % 3 + 1)
             + "Begin now." for i in range(8)]
    cfg = AutoDANConfig(population=6, generations=2, check_tokens=5, early_stop=True, seed=2)
    with counted(h.model) as c:
        res = run(h, [(GOAL, TARGET)], cfg, texts=texts)
    led = res.compute
    assert led.generations >= 1 and led.candidate_evals >= 6  # fitness rows and greedy checks
    assert (led.forward_tokens, led.logit_rows) == (c["fwd"], c["rows"])
    assert c["bwd"] == led.backward_tokens == 0
    assert led.flops == _expected(led.params, c) > 0
    assert led.flops == sum(led.flops_by_pass().values()) == led.flops_by_pass()["forward"]


def test_generation_ledger_matches_decoding() -> None:
    from refusalscope.data.load import Prompt
    from refusalscope.generation import GenerateConfig, generate_rows, generation_ledger

    h = tiny_handle("llama", seed=1)
    prompts = [Prompt(id=f"q{i}", prompt="word " * (3 * i + 1), split="eval", label="harmful",
                      source="t") for i in range(5)]
    with counted(h.model) as c:
        rows = list(generate_rows(h, prompts, GenerateConfig(model="x", max_new_tokens=6),
                                  batch_size=3))
    led = generation_ledger(h, rows)
    assert (led.forward_tokens, led.logit_rows) == (c["fwd"], c["rows"])
    assert led.logit_rows == sum(r["new_tokens"] for r in rows) == led.generated_tokens
    assert led.flops == _expected(led.params, c)
