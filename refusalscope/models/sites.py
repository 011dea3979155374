"""Named activation sites, TransformerLens style, resolved to modules by a small family table.

Site names: `blocks.{L}.hook_resid_pre`, `blocks.{L}.hook_resid_mid`, `blocks.{L}.hook_resid_post`,
`blocks.{L}.hook_attn_out`, `blocks.{L}.hook_mlp_out` (short forms `resid_pre` etc. are accepted
where a layer is given separately). Each family is a row of module paths, not a subclass:

- resid_pre   input of decoder layer L (what the block reads from the residual stream)
- resid_post  output of decoder layer L
- attn_out    what attention adds to the residual stream (for Gemma 2/3: after the
              post-attention norm, since that is what is added)
- mlp_out     what the MLP adds to the residual stream (Gemma 2/3: after the post-FFN norm)
- resid_mid   resid_pre + attn_out; not defined for parallel-attention blocks (Phi-1/2, GPT-J)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from refusalscope.errors import UserError

SITE_KINDS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
_SITE_RE = re.compile(r"^blocks\.(\d+)\.hook_(resid_pre|resid_mid|resid_post|attn_out|mlp_out)$")


@dataclass(frozen=True)
class Family:
    """Where a model family keeps its decoder layers and their parts (dotted module paths)."""

    layers: str  # path from the causal-LM root to the ModuleList of decoder layers
    attn_out: str  # inside a layer: module whose output is added to the residual after attention
    mlp_out: str  # inside a layer: module whose output is added to the residual after the MLP
    attn_in_norm: str = "input_layernorm"  # its input is the residual stream entering the block
    parallel: bool = False  # attention and MLP read the same input (no resid_mid)


_LLAMA = Family(layers="model.layers", attn_out="self_attn", mlp_out="mlp")
_GEMMA_SANDWICH = Family(layers="model.layers", attn_out="post_attention_layernorm",
                         mlp_out="post_feedforward_layernorm")

# model_type (config.model_type) -> Family. Add a row to support a new decoder family.
FAMILIES: dict[str, Family] = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "ministral3": _LLAMA,  # the language model of a mistral3 checkpoint (models.textonly)
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gemma": _LLAMA,
    "phi3": _LLAMA,
    "gemma2": _GEMMA_SANDWICH,
    "gemma3_text": _GEMMA_SANDWICH,
    "gemma3": Family(layers="model.language_model.layers", attn_out="post_attention_layernorm",
                     mlp_out="post_feedforward_layernorm"),
    "phi": Family(layers="model.layers", attn_out="self_attn", mlp_out="mlp", parallel=True),
}


@dataclass(frozen=True)
class Site:
    """A parsed site name: layer index and kind."""

    layer: int
    kind: str

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.hook_{self.kind}"


def parse_site(name: str, n_layers: int) -> Site:
    """Parse `blocks.{L}.hook_{kind}`; negative-free, range-checked against the model."""
    m = _SITE_RE.match(name.strip())
    if not m:
        raise UserError(
            f"unknown site {name!r}: use blocks.<L>.hook_<{'|'.join(SITE_KINDS)}>")
    layer = int(m.group(1))
    if layer >= n_layers:
        raise UserError(f"site {name!r}: layer {layer} out of range (model has {n_layers} layers)")
    return Site(layer, m.group(2))


def site_name(layer: int, kind: str) -> str:
    if kind not in SITE_KINDS:
        raise UserError(f"unknown site kind {kind!r}: one of {', '.join(SITE_KINDS)}")
    return f"blocks.{layer}.hook_{kind}"


def family_for(model_type: str) -> Family:
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise UserError(
            f"no site table for model type {model_type!r} (known: {known}); "
            "add a row to refusalscope.models.sites.FAMILIES") from None


def get_module(root, path: str):  # type: ignore[no-untyped-def]
    """Follow a dotted path of attributes / integer indices from `root`."""
    obj = root
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj
