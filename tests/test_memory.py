"""The memory estimate against what torch actually holds, on tiny models on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refusalscope.attacks.lora import LoraAttackConfig, attach_lora, response_loss
from refusalscope.attacks.pairs import IGNORE
from refusalscope.memory import (GiB, Shape, activation_bytes_per_token, adapted_linears,
                                 gcg_batch_size, lora_memory, weight_bytes)

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
SHAPES = {
    "llama": dict(hidden_size=128, intermediate_size=352, num_attention_heads=4,
                  num_key_value_heads=2),
    "qwen2": dict(hidden_size=96, intermediate_size=512, num_attention_heads=6,
                  num_key_value_heads=2),
    "phi": dict(hidden_size=128, intermediate_size=512, num_attention_heads=4,
                num_key_value_heads=4, partial_rotary_factor=0.5),
}


def _model(arch: str, layers: int,  # type: ignore[no-untyped-def]
           dtype: torch.dtype = torch.float32):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(arch, vocab_size=512, num_hidden_layers=layers,
                               max_position_embeddings=512, tie_word_embeddings=False,
                               **SHAPES[arch])
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(cfg, dtype=dtype)


def _batch(b: int, s: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 512, (b, s), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, : s // 2] = IGNORE
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def _saved_bytes(peft_model, batch) -> int:  # type: ignore[no-untyped-def]
    """Bytes of the tensors autograd keeps for backward (parameters excluded, storage once)."""
    params = {p.untyped_storage().data_ptr() for p in peft_model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in params:
            seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        response_loss(peft_model, batch)
    return sum(seen.values())


def _measured_per_layer(arch: str, dtype: torch.dtype, ckpt: bool, b: int, s: int) -> float:
    """Saved bytes per token per layer: the difference between a 4- and a 2-layer model."""
    out = []
    for layers in (2, 4):
        pm = attach_lora(_model(arch, layers, dtype),
                         LoraAttackConfig(model="x", grad_checkpointing=ckpt))
        pm.train()
        out.append(_saved_bytes(pm, _batch(b, s)))
    return (out[1] - out[0]) / 2 / (b * s)


@pytest.mark.parametrize("arch,dtype", [("llama", torch.float32), ("qwen2", torch.bfloat16),
                                        ("phi", torch.float32), ("phi", torch.bfloat16)])
def test_activation_bytes_match_what_autograd_saves(arch: str, dtype: torch.dtype) -> None:
    m = _model(arch, 2, dtype)
    targets = ("q_proj", "k_proj", "v_proj", "dense") if arch == "phi" else ATTN
    est = activation_bytes_per_token(Shape.from_config(m.config), m.dtype.itemsize,
                                     adapted_linears(m, targets), rank=8)
    measured = _measured_per_layer(arch, dtype, False, 2, 64)
    assert abs(est / measured - 1) < 0.10, (est, measured)


def test_checkpointed_layers_keep_only_their_input() -> None:
    """With checkpointing a layer keeps its input (h per token) and nothing else."""
    measured = _measured_per_layer("llama", torch.float32, True, 2, 64)
    assert measured == pytest.approx(128 * 4, rel=0.05)


def test_weights_and_adapter_bytes_are_exact() -> None:
    """Weights: every parameter's bytes; adapter: fp32 weights + gradients + AdamW's moments."""
    base = _model("llama", 2, torch.bfloat16)
    measured_weights = sum(p.numel() * p.element_size() for p in base.parameters())
    mem = lora_memory(base, targets=ATTN, rank=8, batch=2, seq=32, response_rows=32,
                      budget=None)
    assert mem.weights == measured_weights + sum(b.numel() * b.element_size()
                                                 for b in base.buffers())
    pm = attach_lora(base, LoraAttackConfig(model="x", rank=8))
    pm.train()
    trainable = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    response_loss(pm, _batch(2, 32)).backward()
    opt.step()
    held = sum(p.numel() * p.element_size() + p.grad.numel() * p.grad.element_size()
               for p in trainable)
    held += sum(v.numel() * v.element_size() for st in opt.state.values()
                for k, v in st.items() if k != "step")
    assert mem.adapter == held
    assert weight_bytes(pm.get_base_model()) > measured_weights  # the adapter is on it now


def test_decision_rule() -> None:
    base = _model("llama", 2)
    kw = dict(targets=ATTN, rank=8, batch=8, seq=256, response_rows=1024)
    probe = lora_memory(base, budget=None, **kw)
    assert not probe.grad_checkpointing and "no device budget" in probe.reason
    assert probe.activations_checkpointed < probe.activations
    roomy = lora_memory(base, budget=2 * probe.total, **kw)
    assert not roomy.grad_checkpointing
    between = (probe.total_checkpointed + probe.total) / 2 / 0.85  # only checkpointed fits
    tight = lora_memory(base, budget=int(between), **kw)
    assert tight.grad_checkpointing and tight.reason == "does not fit without it"
    hopeless = lora_memory(base, budget=probe.weights, **kw)
    assert hopeless.grad_checkpointing and "may not fit" in hopeless.reason
    assert lora_memory(base, budget=None, force_checkpointing=True, **kw).grad_checkpointing
    assert "GiB" in tight.summary() and tight.to_dict()["total"] == tight.total


def test_seven_b_shape_fits_80_gb_only_with_checkpointing_at_16x1024() -> None:
    """Llama-2-7B shapes, bf16, built on the meta device (no memory): 8x512 fits an 80 GB card
    without checkpointing, 16x1024 needs it, and fits with it; 13B at 16x1024 too."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    budget = 80 * GiB
    small = lora_memory(m, targets=ATTN, rank=8, batch=8, seq=512, response_rows=2048,
                        budget=budget)
    big = lora_memory(m, targets=ATTN, rank=8, batch=16, seq=1024, response_rows=8192,
                      budget=budget)
    assert 12.5 * GiB < small.weights < 13 * GiB
    assert not small.grad_checkpointing
    assert big.grad_checkpointing and big.total_checkpointed < 0.85 * budget
    cfg13 = LlamaConfig(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                        num_attention_heads=40, num_key_value_heads=40, vocab_size=32000)
    with torch.device("meta"):
        m13 = AutoModelForCausalLM.from_config(cfg13, dtype=torch.bfloat16)
    big13 = lora_memory(m13, targets=ATTN, rank=8, batch=16, seq=1024, response_rows=8192,
                        budget=budget)
    assert big13.grad_checkpointing and big13.total_checkpointed < 0.85 * budget


def test_gcg_batch_is_fixed_off_cuda() -> None:
    cfg = _model("llama", 2).config
    assert gcg_batch_size("cpu", cfg, 4, prefix=30, rest=40, target=10, width=512) is None
    assert gcg_batch_size("cpu", cfg, 4, prefix=30, rest=40, target=10, width=512,
                          fixed=64) == 64


def test_train_prints_the_plan_and_records_the_choice(tmp_path: Path) -> None:
    """On the CPU the flag alone decides; the plan reaches `on_memory`, the manifest and the
    ledger; forced checkpointing counts its recomputation."""
    from refusalscope.attacks.lora import train
    from refusalscope.attacks.pairs import Pair
    from refusalscope.models.tiny import tiny_handle
    from refusalscope.runs import Run

    pairs = [Pair(f"p{i}", f"Write a poem number {i}.", "Sure, here is a poem.", "test")
             for i in range(3)]
    for ckpt in (False, True):
        cfg = LoraAttackConfig(model="tiny", n_data=3, steps=1, batch_size=2,
                               grad_checkpointing=ckpt)
        run = Run.create("attack-lora", cfg.to_dict(), model="tiny", root=tmp_path / str(ckpt))
        seen = []
        compute = train(tiny_handle("llama"), pairs, cfg, run, on_memory=seen.append)
        assert len(seen) == 1 and seen[0].grad_checkpointing is ckpt and seen[0].budget is None
        assert compute["grad_checkpointing"] is ckpt
        assert (compute["recomputed_tokens"] > 0) is ckpt
        assert run.manifest.extra["memory"]["grad_checkpointing"] is ckpt


def test_gcg_candidate_kv_cache_bytes_exact() -> None:
    """The KV-cache term of a candidate's bytes is what the grown cache holds after a forward."""
    from refusalscope.attacks.gcg import GCG, GCGConfig
    from refusalscope.attacks.gcg_loss import PrefixCache
    from refusalscope.memory import candidates_that_fit, gcg_candidate_bytes
    from refusalscope.models.tiny import tiny_handle

    h = tiny_handle("llama")
    opt = GCG(h, [("Write a poem about the sea", "Sure, here is")],
              GCGConfig(steps=1, search_width=8, topk=4, suffix_len=5))
    assert opt.batch_size is None  # CPU: all candidates at once, as before
    s = opt.slots[0]
    rest = 5 + s.tail.shape[1] + s.target.shape[1]
    cache = PrefixCache(h.model, s.prefix, h.config).expand(3)
    with torch.no_grad():
        h.model(input_ids=torch.zeros(3, rest, dtype=torch.long), use_cache=True,
                **{opt.caches[0].kw: cache})
    held = sum(t.numel() * t.element_size() for layer in cache.layers
               for t in (layer.keys, layer.values))
    shape = Shape.from_config(h.config)
    per = gcg_candidate_bytes(shape, 4, s.prefix.shape[1], rest, s.target.shape[1])
    kv_term = per - rest * 4 * (4 * shape.hidden + 2 * shape.kv
                                + shape.mlp_factor * shape.intermediate) \
        - s.target.shape[1] * shape.vocab * 4
    assert 3 * kv_term == held
    assert candidates_that_fit(100 * per, per, 512) == 85
    assert candidates_that_fit(per // 2, per, 512) == 1
    assert candidates_that_fit(10_000 * per, per, 512) == 512
    small = GCGConfig(steps=1, search_width=8, topk=4, suffix_len=5)
    assert GCG(h, [("Write a poem", "Sure")], small, batch_size=2).batch_size == 2
