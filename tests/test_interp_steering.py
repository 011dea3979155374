"""Steering hooks (add, ablate), orthogonalised weights and SteerSpec on tiny models."""

import pytest
import torch

from refusalscope.errors import UserError
from refusalscope.interp import steering
from refusalscope.interp.steering import SteerSpec
from refusalscope.models.handle import ModelHandle
from refusalscope.models.sites import site_name
from refusalscope.models.tiny import tiny_config, tiny_handle, tiny_tokenizer

TEXTS = ["Write a short poem about the sea.", "hello", "Explain photosynthesis step by step."]


def _enc(h):
    return h.tokenizer([h.format_prompt(t) for t in TEXTS], return_tensors="pt", padding=True,
                       add_special_tokens=False)


def _logits(h, hooks=()):
    with torch.no_grad(), h.hooks(hooks):
        return h.model(**_enc(h)).logits


def _reader(store, key):
    def fn(x, site):
        store[key] = x.detach().clone()
    return fn


def _unit(d, seed=0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(d, generator=g)
    return v / v.norm()


@pytest.mark.parametrize("arch", ["llama", "gemma3_text", "phi"])
def test_ablation_zeroes_the_projection_at_every_site(arch):
    h = tiny_handle(arch, seed=1)
    r = _unit(h.d_model)
    kinds = ("resid_pre", "resid_post") if h.family.parallel else \
        ("resid_pre", "resid_mid", "resid_post")
    seen, before = {}, {}
    reads = [(site_name(i, k), _reader(seen, (i, k))) for i in range(h.n_layers) for k in kinds]
    _logits(h, [(n, _reader(before, n)) for n, _ in reads[:1]])
    abl = steering.ablate_hooks(r, h.n_layers, parallel=h.family.parallel)
    assert len(abl) == h.n_layers * len(kinds)
    _logits(h, [*abl, *reads])
    for key, x in seen.items():
        proj = (x @ r).abs().max()
        assert proj < 1e-5 * x.norm(dim=-1).max(), (key, proj)
    first = next(iter(before.values()))
    assert (first @ r).abs().max() > 1e-3  # without ablation the stream does carry r


def test_addition_adds_exactly_alpha_times_direction():
    h = tiny_handle("qwen2", seed=2)
    v = torch.randn(h.d_model)
    base, steered = {}, {}
    _logits(h, [(site_name(1, "resid_pre"), _reader(base, 1)),
                (site_name(2, "resid_pre"), _reader(base, 2))])
    _logits(h, [*steering.add_hooks(v, 3.5, [1]),
                (site_name(1, "resid_pre"), _reader(steered, 1)),
                (site_name(2, "resid_pre"), _reader(steered, 2))])
    torch.testing.assert_close(steered[1] - base[1], (3.5 * v).expand_as(base[1]),
                               atol=1e-5, rtol=0)
    assert not torch.allclose(steered[2], base[2])  # later layers see the change
    two = steering.add_hooks(v, 1.0, [0, 2], site="resid_post")
    assert [n for n, _ in two] == ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]


def test_hooks_are_removed_after_an_exception():
    h = tiny_handle("llama", seed=3)
    clean = _logits(h)
    with pytest.raises(RuntimeError, match="boom"):
        with h.hooks(steering.ablate_hooks(_unit(h.d_model), h.n_layers)):
            raise RuntimeError("boom")
    for m in h.model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks
    torch.testing.assert_close(_logits(h), clean, atol=0, rtol=0)


def _tied_qwen(seed=4):
    from transformers import AutoModelForCausalLM

    tok = tiny_tokenizer()
    cfg = tiny_config("qwen2", len(tok), tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    return ModelHandle(model, tok, "tiny-tied", source="tiny")


@pytest.mark.parametrize("make", [lambda: tiny_handle("llama", seed=5), _tied_qwen],
                         ids=["llama", "qwen2-tied"])
def test_orthogonalized_weights_reproduce_hook_ablation(make, tmp_path):
    h = make()
    r = _unit(h.d_model, seed=7)
    hooked = _logits(h, steering.ablate_hooks(r, h.n_layers))
    clean = _logits(h)
    steering.orthogonalize(h, r)
    baked = _logits(h)
    torch.testing.assert_close(baked, hooked, atol=1e-5, rtol=0)
    assert (baked - clean).abs().max() > 1e-3
    out = steering.save_orthogonalized(h, tmp_path / "ortho", {"operation": "orthogonalize"})
    again = ModelHandle.load(str(out))
    torch.testing.assert_close(_logits(again), hooked, atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="not overwriting"):
        steering.save_orthogonalized(h, out, {})


@pytest.mark.parametrize("arch", ["gemma3_text"])  # phi is supported: tests/test_seed_models.py
def test_orthogonalize_refuses_unsupported_families(arch):
    h = tiny_handle(arch)
    with pytest.raises(UserError, match="orthogonalize supports"):
        steering.orthogonalize(h, _unit(h.d_model))


def test_ablation_keeps_bfloat16_and_projection_small():
    x = torch.randn(2, 5, 64, dtype=torch.bfloat16)
    r = _unit(64)
    y = steering.ablate(r)(x, None)
    assert y.dtype == torch.bfloat16
    assert (y.float() @ r).abs().max() < 0.05 * x.float().norm(dim=-1).max()


def test_spec_parse_round_trip_and_errors(tmp_path):
    s = SteerSpec.parse("add:d.h5:alpha=4:layers=2-4,7", n_layers=8)
    assert s == SteerSpec("add", "d.h5", alpha=4.0, layers=(2, 3, 4, 7))
    assert SteerSpec.parse(s.to_string()) == s
    assert SteerSpec.from_dict(s.to_dict()) == s
    assert SteerSpec.parse("ablate:d.h5") == SteerSpec("ablate", "d.h5")
    assert SteerSpec.parse("add:d.h5:layers=all", n_layers=3).layers == (0, 1, 2)
    for bad, msg in [("ablate", "no directions file"), ("ablate:", "no directions file"),
                     ("add:d.h5:alpha=x", "not a number"), ("add:d.h5:beta=1", "option"),
                     ("flip:d.h5", "mode"), ("ablate:d.h5:alpha=2", "no alpha"),
                     ("add:d.h5:layers=9", "out of range")]:
        with pytest.raises(UserError, match=msg):
            SteerSpec.parse(bad, n_layers=8)
    with pytest.raises(UserError, match="no directions file at"):
        SteerSpec.parse(f"ablate:{tmp_path / 'missing.h5'}").resolve()


def test_spec_hooks_check_model_hash_and_layers(tmp_path):
    from refusalscope.interp.directions import compute_directions, save_directions

    h = tiny_handle("qwen2", seed=0)
    d = compute_directions(h, TEXTS[:2], ["Sure, here", "As an AI"], kind="last")
    d.selected = (1, 0)
    p = save_directions(tmp_path / "d.h5", d)
    spec = SteerSpec.parse(f"add:{p}:alpha=2").resolve()
    assert spec.sha256 and SteerSpec.parse(spec.to_string()) == spec
    hooks = spec.hooks(h)
    assert [n for n, _ in hooks] == ["blocks.1.hook_resid_pre"]
    x = torch.zeros(1, 1, h.d_model)
    torch.testing.assert_close(hooks[0][1](x, None)[0, 0],
                               torch.from_numpy(2 * d.diff[1, 0]).float(), atol=1e-6, rtol=0)
    assert len(SteerSpec.parse(f"ablate:{p}").hooks(h)) == 3 * h.n_layers
    with pytest.raises(UserError, match="another model"):
        spec.hooks(tiny_handle("qwen2", seed=9))
    with pytest.raises(UserError, match="out of range"):
        SteerSpec("add", str(p), layers=(5,)).hooks(h)
    with open(p, "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match="changed"):
        spec.hooks(h)


def test_steer_eval_summary_separates_looping_refusals():
    from refusalscope.interp.steer_eval import _summary

    loop = "I cannot proceed as " * 12
    rows = [{"prompt": "Write a poem about the sea.", "response": r} for r in
            (loop, "I'm sorry, but I can't help with that.", "The sea is wide and deep, " +
             "its waves roll in and out beneath a silver moon.")]
    s = _summary("harmless/add=4", rows, [True, True, False])
    assert (s["refused"], s["refused_coherent"], s["degenerate"]) == (2, 1, 0)
    assert s["coherent_ci_low"] <= s["coherent_refusal_rate"] == 1 / 3 <= s["coherent_ci_high"]
