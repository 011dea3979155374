"""Site resolution and hooks on tiny random models of several architectures."""

from __future__ import annotations

import pytest
import torch

from refusalscope.errors import UserError
from refusalscope.models.sites import parse_site, site_name
from refusalscope.models.tiny import ARCHS, tiny_handle


@pytest.fixture(scope="module", params=ARCHS)
def handle(request):
    return tiny_handle(request.param, seed=1)


def _inputs(h):
    return h.tokenizer(["hello there, how are you", "a fox"], return_tensors="pt", padding=True)


def _record(h, names, extra=()):
    seen = {}

    def rec(x, site):
        seen[site.name] = x.detach().clone()

    with torch.no_grad(), h.hooks([*extra, *[(n, rec) for n in names]]):
        logits = h.model(**_inputs(h)).logits
    return seen, logits


def _all_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_parse_site():
    assert parse_site("blocks.2.hook_resid_pre", 3).layer == 2
    assert parse_site("blocks.0.hook_mlp_out", 3).kind == "mlp_out"
    assert site_name(1, "attn_out") == "blocks.1.hook_attn_out"
    with pytest.raises(UserError, match="out of range"):
        parse_site("blocks.3.hook_resid_pre", 3)
    with pytest.raises(UserError, match="unknown site"):
        parse_site("blocks.1.hook_q", 3)


def test_family_resolves_every_site(handle):
    kinds = ["resid_pre", "resid_post", "attn_out", "mlp_out"]
    if not handle.family.parallel:
        kinds.append("resid_mid")
    names = [site_name(layer, k) for layer in range(handle.n_layers) for k in kinds]
    seen, _ = _record(handle, names)
    assert set(seen) == set(names)
    for x in seen.values():
        assert x.shape[-1] == handle.d_model == 64


def test_resid_post_feeds_next_resid_pre_and_attn_mlp_sum(handle):
    seen, _ = _record(handle, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_pre",
                               "blocks.1.hook_attn_out", "blocks.1.hook_mlp_out",
                               "blocks.1.hook_resid_post"])
    assert torch.equal(seen["blocks.0.hook_resid_post"], seen["blocks.1.hook_resid_pre"])
    # The block adds exactly what attention and the MLP contribute.
    total = seen["blocks.1.hook_resid_pre"] + seen["blocks.1.hook_attn_out"] + seen["blocks.1.hook_mlp_out"]
    assert torch.allclose(total, seen["blocks.1.hook_resid_post"], atol=1e-5)


def test_hook_adds_exact_delta_and_is_removed(handle):
    before, logits0 = _record(handle, ["blocks.0.hook_resid_post"])
    delta = torch.randn(handle.d_model, generator=torch.Generator().manual_seed(0))
    add = ("blocks.0.hook_resid_post", lambda x, site: x + delta)
    after, logits1 = _record(handle, ["blocks.1.hook_resid_pre"], extra=[add])
    assert torch.equal(after["blocks.1.hook_resid_pre"], before["blocks.0.hook_resid_post"] + delta)
    assert not torch.allclose(logits0, logits1)
    assert _all_hooks(handle.model) == 0
    _, logits2 = _record(handle, [])
    assert torch.equal(logits0, logits2)


def test_hooks_removed_after_exception(handle):
    with pytest.raises(RuntimeError), handle.hooks([("blocks.1.hook_mlp_out", lambda x, s: None)]):
        raise RuntimeError("boom")
    assert _all_hooks(handle.model) == 0


def test_resid_mid_write_shifts_stream(handle):
    if handle.family.parallel:
        with pytest.raises(UserError, match="resid_mid"), handle.hooks(
                [("blocks.1.hook_resid_mid", lambda x, s: None)]):
            pass
        assert _all_hooks(handle.model) == 0
        return
    base, _ = _record(handle, ["blocks.1.hook_resid_mid"])
    delta = torch.full((handle.d_model,), 0.5)
    shifted, _ = _record(handle, ["blocks.1.hook_resid_mid"],
                         extra=[("blocks.1.hook_resid_mid", lambda x, s: x + delta)])
    # The recorder runs after the writer on the same site: it sees the written value.
    assert torch.allclose(shifted["blocks.1.hook_resid_mid"], base["blocks.1.hook_resid_mid"] + delta,
                          atol=1e-6)


def test_chat_template_and_fallback():
    h = tiny_handle("llama")
    assert h.format_prompt("hi", system="be brief") == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    h.tokenizer.chat_template = None
    assert h.format_prompt("hi") == "### Instruction:\nhi\n\n### Response:\n"
