"""Accelerator memory estimates: LoRA training (chooses gradient checkpointing) and GCG's
candidate batch.

LoRA training peak, in bytes (T = batch x padded length tokens, R = response rows whose logits
are computed, dt = bytes per weight element, L layers of width h, kv = key/value width, i = MLP
width, r = LoRA rank, A = adapted linears per layer with inputs of total width a_in):

==================  ==========================================================================
weights             every base parameter x dt (counted on the model)
adapter             16 bytes per LoRA parameter: fp32 weight, fp32 gradient, AdamW's two fp32
                    moments (peft keeps adapters in fp32 on a 16-bit base)
activations         T x L x [dt (5h + 2kv + m i) + 4 (r A + heads + 2) + (dt < 4) 4 (a_in + h/2)]
                    saved for backward, with m = 3 for gated MLPs (SwiGLU) and 4 for GELU MLPs
                    (phi); the last term is the fp32 copies a 16-bit model makes (peft casts each
                    adapted layer's input to fp32; RMSNorm upcasts: the h/2, not for LayerNorm)
  checkpointed      T x L x dt h (each layer's input) + one layer's full activations (rebuilt
                    during backward)
loss                R x V x (dt + 8): the head's output, its fp32 copy and log-softmax
==================  ==========================================================================

The activation coefficients were read off the tensors autograd saves (transformers 5, SDPA
attention, no T^2 term) on tiny Llama / Qwen2 / Phi models; `tests/test_memory.py` checks the
estimate against those saved tensors in fp32 and bf16 on the CPU, and the adapter's optimizer
bytes exactly. Allocator fragmentation and the CUDA context are not in the estimate: the
decision keeps `HEADROOM` of the budget free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

GiB = 1 << 30
HEADROOM = 0.15  # share of the device budget kept free (fragmentation, workspaces, cuBLAS)
ADAPTER_BYTES = 16  # per trainable fp32 parameter: weight + gradient + 2 AdamW moments
_GELU_MLP = ("phi", "gpt2", "gpt_neox", "gptj", "falcon")  # ungated MLPs with tanh-GELU


@dataclass(frozen=True)
class Shape:
    """What the estimate needs from a decoder-only model's config (element counts)."""

    layers: int
    hidden: int
    kv: int  # key/value projection width (kv heads x head dim)
    intermediate: int
    heads: int
    vocab: int
    mlp_factor: int  # saved MLP tensors per token, in units of `intermediate`
    rms_norm: bool = True  # RMSNorm, which upcasts to fp32 (LayerNorm families do not)

    @classmethod
    def from_config(cls, config: Any) -> Shape:
        c = getattr(config, "text_config", None) or config
        heads = c.num_attention_heads
        head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
        kv_heads = getattr(c, "num_key_value_heads", None) or heads
        inter = getattr(c, "intermediate_size", None) or 4 * c.hidden_size
        return cls(layers=c.num_hidden_layers, hidden=c.hidden_size, kv=kv_heads * head_dim,
                   intermediate=inter, heads=heads, vocab=c.vocab_size,
                   mlp_factor=4 if c.model_type in _GELU_MLP else 3,
                   rms_norm=c.model_type not in _GELU_MLP)


@dataclass(frozen=True)
class LoraMemory:
    """A LoRA training step's estimated peak memory (bytes) and the checkpointing decision."""

    weights: int
    adapter: int  # LoRA weights + gradients + optimizer state
    activations: int  # saved for backward, without checkpointing
    activations_checkpointed: int
    loss: int
    budget: int | None  # bytes the device can give (None: not known, e.g. CPU)
    grad_checkpointing: bool  # the decision
    reason: str

    @property
    def total(self) -> int:
        return self.weights + self.adapter + self.activations + self.loss

    @property
    def total_checkpointed(self) -> int:
        return self.weights + self.adapter + self.activations_checkpointed + self.loss

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "total_checkpointed": self.total_checkpointed}

    def summary(self) -> str:
        """One line: the estimate with and without checkpointing, the budget, the decision."""
        b = f"{self.budget / GiB:.1f} GiB" if self.budget else "unknown"
        return (f"memory estimate: {self.total / GiB:.2f} GiB without gradient checkpointing, "
                f"{self.total_checkpointed / GiB:.2f} GiB with (weights "
                f"{self.weights / GiB:.2f}, adapter+AdamW {self.adapter / GiB:.2f}, activations "
                f"{self.activations / GiB:.2f} | {self.activations_checkpointed / GiB:.2f}, "
                f"loss {self.loss / GiB:.2f}); budget {b}: gradient checkpointing "
                f"{'on' if self.grad_checkpointing else 'off'} ({self.reason})")


def weight_bytes(model: Any) -> int:
    """Bytes of every parameter and buffer of `model` (shared tensors once)."""
    seen: set[int] = set()
    total = 0
    for t in (*model.parameters(), *model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


def adapted_linears(model: Any, targets: tuple[str, ...] | list[str]) -> list[tuple[int, int]]:
    """`(in_features, out_features)` of the linears of the first decoder layer named in
    `targets` (the modules a LoRA adapter with those target names wraps in every layer)."""
    import torch

    out = []
    for name, m in model.named_modules():
        parts = name.split(".")
        if (isinstance(m, torch.nn.Linear) and parts[-1] in targets and "0" in parts
                and not name.endswith("lm_head")):
            idx = parts.index("0")
            if parts[idx - 1] in ("layers", "h", "blocks", "layer"):
                out.append((m.in_features, m.out_features))
    return out


def activation_bytes_per_token(shape: Shape, dt: int, linears: list[tuple[int, int]],
                               rank: int) -> int:
    """Bytes autograd keeps per token for one decoder layer without checkpointing."""
    a_in = sum(i for i, _ in linears)
    base = dt * (5 * shape.hidden + 2 * shape.kv + shape.mlp_factor * shape.intermediate)
    small = 4 * (rank * len(linears) + shape.heads + 2)
    upcast = 4 * (a_in + (shape.hidden // 2 if shape.rms_norm else 0)) if dt < 4 else 0
    return base + small + upcast


def lora_memory(model: Any, *, targets: tuple[str, ...] | list[str], rank: int, batch: int,
                seq: int, response_rows: int, budget: int | None,
                force_checkpointing: bool = False) -> LoraMemory:
    """Estimate one LoRA step's peak on `model` (the base model, adapter not yet attached) for
    `batch` rows padded to `seq` tokens with `response_rows` loss rows, and decide gradient
    checkpointing: on if forced, or if the estimate without it exceeds `(1 - HEADROOM)` of
    `budget` bytes (None: no automatic decision).

    Example:
        mem = lora_memory(model, targets=("q_proj", "v_proj"), rank=8, batch=16, seq=1024,
                          response_rows=8192, budget=device_budget("cuda"))
        mem.grad_checkpointing, mem.summary()
    """
    shape = Shape.from_config(model.config)
    dt = next(model.parameters()).element_size()
    linears = adapted_linears(model, targets)
    n_lora = rank * sum(i + o for i, o in linears) * shape.layers
    tokens = batch * seq
    per_layer = activation_bytes_per_token(shape, dt, linears, rank)
    full = tokens * shape.layers * per_layer
    ckpt = tokens * shape.layers * dt * shape.hidden + tokens * per_layer
    mem = dict(weights=weight_bytes(model), adapter=ADAPTER_BYTES * n_lora, activations=full,
               activations_checkpointed=ckpt, loss=response_rows * shape.vocab * (dt + 8),
               budget=budget)
    no_ckpt = mem["weights"] + mem["adapter"] + full + mem["loss"]
    if force_checkpointing:
        on, why = True, "asked for"
    elif budget is None:
        on, why = False, "no device budget known: not chosen automatically"
    elif no_ckpt <= (1 - HEADROOM) * budget:
        on, why = False, f"fits in {1 - HEADROOM:.0%} of the budget without it"
    else:
        on = True
        fits = no_ckpt - full + ckpt <= (1 - HEADROOM) * budget
        why = ("does not fit without it" if fits else
               "does not fit without it, and may not fit with it: lower --batch-size or --max-len "
               "if the step runs out of memory")
    return LoraMemory(**mem, grad_checkpointing=on, reason=why)


def device_budget(device: Any) -> int | None:
    """Bytes this process can use on a CUDA device: what is free plus what torch already holds
    there (the model's weights, counted in the estimate); None on other devices."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(dev)
    return int(free + torch.cuda.memory_reserved(dev))


def gcg_candidate_bytes(shape: Shape, dt: int, prefix: int, rest: int, target: int) -> int:
    """Bytes one GCG candidate forward holds at its peak (inference mode): its KV cache (the
    cached prefix is copied when the cache grows by `rest` = suffix + tail + target tokens),
    one layer's transient activations over `rest` tokens, and `target` rows of logits."""
    kv_cache = shape.layers * 2 * shape.kv * (prefix + rest) * dt
    layer = rest * dt * (4 * shape.hidden + 2 * shape.kv
                         + shape.mlp_factor * shape.intermediate)
    return kv_cache + layer + target * shape.vocab * dt


def gcg_batch_size(device: Any, config: Any, dt: int, *, prefix: int, rest: int, target: int,
                   width: int, fixed: int | None = None) -> int | None:
    """Candidates per forward: `fixed` if given; on CUDA as many as fit in `(1 - HEADROOM)` of
    the free memory (at least 1, at most `width`); elsewhere None (all at once, as before).
    """
    if fixed is not None:
        return fixed
    import torch

    dev = torch.device(device)
    if dev.type != "cuda" or not torch.cuda.is_available():
        return None
    free, _ = torch.cuda.mem_get_info(dev)
    per = gcg_candidate_bytes(Shape.from_config(config), dt, prefix, rest, target)
    return candidates_that_fit(free, per, width)


def candidates_that_fit(free: int, per_candidate: int, width: int) -> int:
    """How many candidates of `per_candidate` bytes fit in `(1 - HEADROOM)` of `free` bytes,
    between 1 and `width`."""
    return max(1, min(width, int((1 - HEADROOM) * free // per_candidate)))
