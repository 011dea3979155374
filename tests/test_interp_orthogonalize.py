"""Weight orthogonalisation equals hook ablation at the logits, for every writer family.

`steering.WRITERS` names, per model type, the linears whose outputs are added to the residual
stream; `orthogonalize` strips the direction from them and from the embedding. Each family in
that table (and each of FAMILIES) is built here as a 2-layer random-weight model from its own
transformers config, tied and untied, with every bias and norm gain randomised (a forgotten
bias, or an unembedding still tied to the edited embedding, then shows); the orthogonalised
model's logits are compared with the hooked model's at every position.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from refusalscope.interp import steering
from refusalscope.models.handle import ModelHandle
from refusalscope.models.tiny import tiny_tokenizer

TEXTS = ["Write a short poem about the sea.", "hello", "Explain photosynthesis step by step."]
# Per family: the config options that put biases on the writers where the family allows them.
EXTRA: dict[str, dict[str, Any]] = {
    "llama": {"attention_bias": True, "mlp_bias": True},
    "qwen3": {"attention_bias": True},
    "phi": {"num_key_value_heads": 4, "partial_rotary_factor": 0.5},
}
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "phi3")


def _handle(model_type: str, tied: bool, seed: int = 11) -> ModelHandle:
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = tiny_tokenizer()
    options: dict[str, Any] = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=tied, initializer_range=0.1, pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id, bos_token_id=None)
    cfg = AutoConfig.for_model(model_type, **{**options, **EXTRA.get(model_type, {})})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    # transformers initialises biases to 0 and norm gains to 1: make them count (a final norm
    # gain of 1 hides an unembedding left tied to the edited embedding)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
            elif "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
    return ModelHandle(model, tok, f"tiny-{model_type}", source="tiny")


def _logits(h: ModelHandle, hooks: Any = ()) -> torch.Tensor:
    enc = h.tokenizer([h.format_prompt(t) for t in TEXTS], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    with torch.no_grad(), h.hooks(hooks):
        return h.model(**enc).logits


def test_every_named_family_is_a_writer() -> None:
    assert set(FAMILIES) <= set(steering.WRITERS)


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("model_type", sorted(set(steering.WRITERS) | set(FAMILIES)))
def test_orthogonalized_weights_equal_hook_ablation(model_type: str, tied: bool) -> None:
    h = _handle(model_type, tied)
    assert h.config.model_type == model_type
    emb, unemb = h.model.get_input_embeddings(), h.model.get_output_embeddings()
    assert (unemb.weight is emb.weight) == tied
    g = torch.Generator().manual_seed(7)
    r = torch.randn(h.d_model, generator=g)
    r = r / r.norm()
    hooked = _logits(h, steering.ablate_hooks(r, h.n_layers, parallel=h.family.parallel))
    clean = _logits(h)
    steering.orthogonalize(h, r)
    baked = _logits(h)
    assert (hooked - clean).abs().max() > 1e-2  # the ablation does change the output
    torch.testing.assert_close(baked, hooked, atol=1e-5, rtol=0)
