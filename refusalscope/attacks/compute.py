"""Attack compute accounting: parameter counts, tokens seen and a FLOPs estimate.

FLOPs formula (dense matmuls only; attention's sequence-quadratic term and norms are left out):

    per real (non-padding) token t:          4 * N_body + 6 * N_lora
    per response token (LM head rows only):  4 * N_head
    with gradient checkpointing, per token:  + 2 * (N_body + N_lora)   (the forward is recomputed)

Why: a forward pass costs 2 FLOPs per weight per token. The backward pass through a *frozen*
weight only needs the activation gradient (another 2 per weight), not the weight gradient, so
frozen weights cost 4 rather than the familiar 6; the LoRA weights are trained, so they cost the
full 6. N_body is every parameter except the input embedding (a lookup, not a matmul) and the LM
head; the head is applied only at response positions (see `lora.response_loss`), so it is charged
per response token. Gradients still flow down to the first adapted layer, so the whole body pays
the backward: the estimate is exact for adapters on every layer, a slight over-count otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FLOPS_FORMULA = ("tokens*(4*N_body + 6*N_lora) + response_tokens*4*N_head"
                 " [+ tokens*2*(N_body + N_lora) with gradient checkpointing]")


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of an adapted model (numbers of scalars)."""

    total: int  # base model, without the adapter
    trainable: int  # the adapter
    body: int  # base model minus input embedding and LM head
    head: int  # LM head (shared with the input embedding when tied)


def count_params(model: Any) -> ParamCounts:
    """Counts for a peft model (or any causal LM whose trainable params are the adapter)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    seen: set[int] = set()
    total = 0
    for p in base.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    total -= trainable
    emb = base.get_input_embeddings().weight
    head = base.get_output_embeddings().weight
    body = total - emb.numel() - (0 if head is emb else head.numel())
    return ParamCounts(total=total, trainable=trainable, body=body, head=head.numel())


def flops_estimate(params: ParamCounts, tokens: int, response_tokens: int, *,
                   grad_checkpointing: bool = False) -> int:
    """Training FLOPs by `FLOPS_FORMULA` for `tokens` real tokens, `response_tokens` of them
    in responses.

    Example:
        >>> flops_estimate(ParamCounts(total=10, trainable=1, body=6, head=2), 5, 2)
        166
    """
    flops = tokens * (4 * params.body + 6 * params.trainable) + response_tokens * 4 * params.head
    if grad_checkpointing:
        flops += tokens * 2 * (params.body + params.trainable)
    return flops


@dataclass
class ComputeLog:
    """Running totals of what an attack consumed; written to `compute.json` and the manifest."""

    params: ParamCounts
    grad_checkpointing: bool = False
    steps: int = 0
    examples_seen: int = 0
    tokens_seen: int = 0  # real tokens (prompt + response), padding excluded
    response_tokens_seen: int = 0
    wall_seconds: float = 0.0

    def add_step(self, examples: int, tokens: int, response_tokens: int, seconds: float) -> None:
        self.steps += 1
        self.examples_seen += examples
        self.tokens_seen += tokens
        self.response_tokens_seen += response_tokens
        self.wall_seconds += seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "examples_seen": self.examples_seen,
            "tokens_seen": self.tokens_seen,
            "response_tokens_seen": self.response_tokens_seen,
            "trainable_params": self.params.trainable,
            "total_params": self.params.total,
            "params": asdict(self.params),
            "flops_estimate": flops_estimate(self.params, self.tokens_seen,
                                             self.response_tokens_seen,
                                             grad_checkpointing=self.grad_checkpointing),
            "flops_formula": FLOPS_FORMULA,
            "grad_checkpointing": self.grad_checkpointing,
            "wall_seconds": round(self.wall_seconds, 3),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComputeLog:
        return cls(params=ParamCounts(**d["params"]), grad_checkpointing=d["grad_checkpointing"],
                   steps=d["steps"], examples_seen=d["examples_seen"],
                   tokens_seen=d["tokens_seen"], response_tokens_seen=d["response_tokens_seen"],
                   wall_seconds=d["wall_seconds"])
