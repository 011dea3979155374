"""One compute ledger for every attack, defense and generation: FLOPs from token counts.

Parameter classes (`ParamCounts`, counted on the loaded model):

* ``body``: weights applied at every position: everything but the input embedding and the LM
  head (a frozen adapter is body: it runs on every token);
* ``trainable``: the adapter being trained (LoRA), also applied at every position;
* ``head``: the LM head, applied only to the rows whose logits are computed;
* ``embedding``: the input embedding, a lookup (0 FLOPs), except where a one-hot vector is
  multiplied into it (GCG's gradient), which is a matmul like any other.

Cost of each piece of work (dense matmuls at 2 FLOPs per multiply-add; attention's
sequence-quadratic part, norms and activations are left out, as in Kaplan et al. 2020):

==========================  ==========================================================
forward                     2·(body + trainable) per position + 2·head per logit row
                            + 2·embedding per one-hot row
backward to the inputs      the same again (an activation gradient through every weight)
weight gradients            2·trainable per position (frozen weights need none)
recomputation               2·(body + trainable) per position (gradient checkpointing)
==========================  ==========================================================

So a gradient w.r.t. the inputs through frozen weights (GCG) costs 4·N_body per position, a
LoRA training token 4·N_body + 6·N_lora, a generated token 2·N_body + 2·N_head.

What counts as a position: a token actually run through the model. Padding is not counted
(an artefact of batching); a KV-cached prefix is counted once, where it is run; in generation
the prompt is run once and each new token is fed back once (the last one never is).

Example:
    ledger = Ledger(count_params(model, trained=False), steps=0, examples_seen=0)
    ledger.forward(tokens=40, logit_rows=8)   # one candidate, 8 target rows
    ledger.backward(tokens=40, logit_rows=8)  # ... and the gradient w.r.t. its inputs
    ledger.flops == 2 * forward_flops(ledger.params, 40, 8)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

LEDGER_VERSION = 1
FLOPS_FORMULA = ("2*(N_body+N_train)*(forward_tokens + backward_tokens + recomputed_tokens)"
                 " + 2*N_head*(logit_rows + backward_logit_rows)"
                 " + 2*N_embed*(onehot_rows + backward_onehot_rows)"
                 " + 2*N_train*trained_tokens  [refusalscope.compute]")


@dataclass(frozen=True)
class ParamCounts:
    """Parameter classes of a loaded model (numbers of scalars)."""

    total: int  # the base model, without any adapter
    trainable: int  # the trained adapter (0 when nothing is trained)
    body: int  # applied at every position: total minus input embedding and LM head, plus any
    #            frozen adapter
    head: int  # LM head (shared with the input embedding when tied)
    embedding: int = 0  # input embedding (a lookup)
    tied: bool = False  # the loaded model's head is its input embedding


def count_params(model: Any, *, trained: bool = True) -> ParamCounts:
    """Parameter classes of `model` (a peft model or any causal LM).

    `trained=True`: the parameters with `requires_grad` are the trained adapter (LoRA, TAR);
    `trained=False`: nothing is trained (GCG, AutoDAN, generation), whatever `requires_grad`
    says. Adapter weights (peft's `lora_` names) that are not trained count as body.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    seen: set[int] = set()
    total = trainable = frozen_adapter = 0
    for name, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if trained and p.requires_grad:
            trainable += p.numel()
        elif "lora_" in name:
            frozen_adapter += p.numel()
        else:
            total += p.numel()
    emb = base.get_input_embeddings().weight
    head = base.get_output_embeddings().weight
    tied = head is emb
    body = total - emb.numel() - (0 if tied else head.numel()) + frozen_adapter
    return ParamCounts(total=total, trainable=trainable, body=body, head=head.numel(),
                       embedding=emb.numel(), tied=tied)


def forward_flops(p: ParamCounts, tokens: int, logit_rows: int, onehot_rows: int = 0) -> int:
    """FLOPs of a forward pass over `tokens` positions with `logit_rows` rows through the head.

    Example:
        >>> forward_flops(ParamCounts(total=10, trainable=1, body=6, head=2, embedding=2), 5, 2)
        78
    """
    return 2 * (p.body + p.trainable) * tokens + 2 * p.head * logit_rows \
        + 2 * p.embedding * onehot_rows


def backward_inputs_flops(p: ParamCounts, tokens: int, logit_rows: int,
                          onehot_rows: int = 0) -> int:
    """FLOPs of the backward pass that computes activation (input) gradients only: as much as
    the forward, since every weight's matmul is repeated once with the output gradient."""
    return forward_flops(p, tokens, logit_rows, onehot_rows)


def weight_grad_flops(p: ParamCounts, tokens: int) -> int:
    """FLOPs of the trained weights' gradients over `tokens` positions (frozen weights: none)."""
    return 2 * p.trainable * tokens


def recompute_flops(p: ParamCounts, tokens: int) -> int:
    """FLOPs of re-running the body forward under gradient checkpointing."""
    return 2 * (p.body + p.trainable) * tokens


def train_flops(p: ParamCounts, tokens: int, response_tokens: int, *,
                grad_checkpointing: bool = False) -> int:
    """One training pass (forward, input and weight gradients) over `tokens` positions whose
    loss is on `response_tokens` rows: tokens·(4·N_body + 6·N_train) + response·4·N_head.

    Example:
        >>> train_flops(ParamCounts(total=10, trainable=1, body=6, head=2), 5, 2)
        166
    """
    flops = forward_flops(p, tokens, response_tokens) \
        + backward_inputs_flops(p, tokens, response_tokens) + weight_grad_flops(p, tokens)
    return flops + (recompute_flops(p, tokens) if grad_checkpointing else 0)


def generation_flops(p: ParamCounts, prompt_tokens: int, new_tokens: int) -> int:
    """KV-cached generation of `new_tokens` after a `prompt_tokens` prompt (as
    `Ledger.generation` counts it)."""
    return forward_flops(p, prompt_tokens + max(new_tokens - 1, 0), new_tokens)


_COUNTS = ("forward_tokens", "logit_rows", "onehot_rows", "backward_tokens",
           "backward_logit_rows", "backward_onehot_rows", "trained_tokens", "recomputed_tokens",
           "forward_passes", "backward_passes", "sequences", "candidate_evals", "generations",
           "prompt_tokens", "generated_tokens", "tokens_seen", "response_tokens_seen")


@dataclass
class Ledger:
    """Running counts of the work a run did; `flops` and `to_dict()` derive from them.

    `steps` and `examples_seen` are None for work without optimisation steps (generation,
    templates) and then left out of `to_dict()`. `examples_seen` is prompt-level examples per
    optimisation step summed over steps: a LoRA batch, GCG's active prompts, AutoDAN's requests.
    """

    params: ParamCounts = field(default_factory=lambda: ParamCounts(0, 0, 0, 0))
    steps: int | None = None
    examples_seen: int | None = None
    grad_checkpointing: bool = False
    forward_tokens: int = 0  # positions run forward (those backpropagated included)
    logit_rows: int = 0  # rows through the LM head in forward passes
    onehot_rows: int = 0  # one-hot x embedding rows in forward passes
    backward_tokens: int = 0  # positions backpropagated to the inputs
    backward_logit_rows: int = 0
    backward_onehot_rows: int = 0
    trained_tokens: int = 0  # positions whose trained weights got gradients
    recomputed_tokens: int = 0  # positions re-run forward (gradient checkpointing)
    forward_passes: int = 0  # model calls
    backward_passes: int = 0
    sequences: int = 0  # sequences run forward (candidates x prompts, training rows, generations)
    candidate_evals: int = 0  # candidates scored (search attacks)
    generations: int = 0  # generated replies
    prompt_tokens: int = 0  # of the generated replies' prompts
    generated_tokens: int = 0
    tokens_seen: int = 0  # training examples' real tokens (prompt + response)
    response_tokens_seen: int = 0  # of them, response (loss) tokens
    wall_seconds: float = 0.0

    # -- recording ------------------------------------------------------------------------------
    def forward(self, tokens: int, logit_rows: int, onehot_rows: int = 0, *,
                sequences: int = 0, passes: int = 1) -> None:
        """A forward pass (or `passes` batched calls) over `tokens` real positions."""
        self.forward_tokens += tokens
        self.logit_rows += logit_rows
        self.onehot_rows += onehot_rows
        self.sequences += sequences
        self.forward_passes += passes

    def backward(self, tokens: int, logit_rows: int, onehot_rows: int = 0, *,
                 trained: bool = False, passes: int = 1) -> None:
        """A backward pass to the inputs over what a forward ran; `trained`: weight gradients
        of the trainable parameters too (and recomputation under gradient checkpointing)."""
        self.backward_tokens += tokens
        self.backward_logit_rows += logit_rows
        self.backward_onehot_rows += onehot_rows
        self.backward_passes += passes
        if trained:
            self.trained_tokens += tokens
            self.recomputed_tokens += tokens if self.grad_checkpointing else 0

    def train_step(self, rows: list[tuple[int, int]], seconds: float) -> None:
        """One optimizer step over training rows `(real tokens, response tokens)`: the loss is
        on response rows only (the head runs there), every position is backpropagated."""
        tokens = sum(t for t, _ in rows)
        response = sum(r for _, r in rows)
        self.forward(tokens, response, sequences=len(rows))
        self.backward(tokens, response, trained=True)
        self.tokens_seen += tokens
        self.response_tokens_seen += response
        self.step(len(rows), seconds)

    def generation(self, prompt_tokens: int, new_tokens: int) -> None:
        """One KV-cached reply: the prompt is run once; each new token but the last is fed back;
        every new token needed one row of logits."""
        self.forward(prompt_tokens + max(new_tokens - 1, 0), new_tokens, sequences=1, passes=0)
        self.generations += 1
        self.prompt_tokens += prompt_tokens
        self.generated_tokens += new_tokens

    def step(self, examples: int, seconds: float = 0.0) -> None:
        """One optimisation step over `examples` examples (steps/examples start from 0)."""
        self.steps = (self.steps or 0) + 1
        self.examples_seen = (self.examples_seen or 0) + examples
        self.wall_seconds += seconds

    def restore(self, saved: Ledger) -> None:
        """Take every count of `saved` (a checkpoint's), keeping this ledger's parameters."""
        for name in (*_COUNTS, "steps", "examples_seen", "wall_seconds"):
            setattr(self, name, getattr(saved, name))

    # -- totals ---------------------------------------------------------------------------------
    def flops_by_pass(self) -> dict[str, int]:
        p = self.params
        return {"forward": forward_flops(p, self.forward_tokens, self.logit_rows,
                                         self.onehot_rows),
                "backward_inputs": backward_inputs_flops(p, self.backward_tokens,
                                                         self.backward_logit_rows,
                                                         self.backward_onehot_rows),
                "weight_grads": weight_grad_flops(p, self.trained_tokens),
                "recompute": recompute_flops(p, self.recomputed_tokens)}

    @property
    def flops(self) -> int:
        return sum(self.flops_by_pass().values())

    def to_dict(self) -> dict[str, Any]:
        """The fields every `compute.json` holds (`flops_estimate` = `flops`, for old readers)."""
        out: dict[str, Any] = {"ledger": LEDGER_VERSION, "flops": self.flops,
                               "flops_estimate": self.flops, "flops_by_pass": self.flops_by_pass(),
                               "flops_formula": FLOPS_FORMULA, "params": asdict(self.params),
                               "total_params": self.params.total,
                               "trainable_params": self.params.trainable,
                               "grad_checkpointing": self.grad_checkpointing}
        if self.steps is not None:
            out["steps"] = self.steps
        if self.examples_seen is not None:
            out["examples_seen"] = self.examples_seen
        out.update({name: getattr(self, name) for name in _COUNTS})
        out["wall_seconds"] = round(self.wall_seconds, 3)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ledger:
        """Read `to_dict()` output, or (to resume a run started before the ledger) an older
        LoRA `ComputeLog` or GCG/AutoDAN `Compute` dict, whose missing counts are implied as far
        as they can be (an old GCG dict has no logit rows). Without `params` in `d`, the counts
        are zero until the caller sets them from the loaded model."""
        known = {f.name for f in fields(cls)} - {"params"}
        kw = {k: v for k, v in d.items() if k in known}
        if "wall_s" in d and "wall_seconds" not in d:
            kw["wall_seconds"] = d["wall_s"]
        params = ParamCounts(**d["params"]) if "params" in d else ParamCounts(0, 0, 0, 0)
        led = cls(params=params, **kw)
        if "ledger" in d:
            return led
        if "gradient_tokens" in d:  # GCG/AutoDAN: forward_tokens were candidate tokens only
            led.backward_tokens = d["gradient_tokens"]
            led.forward_tokens += d["gradient_tokens"]
        elif d.get("tokens_seen"):  # LoRA / TAR: every token trained, loss on response rows
            led.forward_tokens = led.backward_tokens = led.trained_tokens = d["tokens_seen"]
            led.logit_rows = led.backward_logit_rows = d.get("response_tokens_seen", 0)
            led.recomputed_tokens = d["tokens_seen"] if led.grad_checkpointing else 0
        return led


def combine(parts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Totals of several ledgers' `to_dict()`s, each with its own parameters (TAR's inner and
    outer loops and its retain generation): FLOPs and counts summed; each part kept under its
    name, and the names under `parts`.

    Example:
        combine({"inner": inner.to_dict(), "outer": outer.to_dict()})["flops"]
    """
    dicts = list(parts.values())
    out: dict[str, Any] = {"ledger": LEDGER_VERSION,
                           "flops_formula": "sum of the parts' " + FLOPS_FORMULA}
    out["flops"] = out["flops_estimate"] = sum(d["flops"] for d in dicts)
    out["flops_by_pass"] = {k: sum(d["flops_by_pass"][k] for d in dicts)
                            for k in dicts[0]["flops_by_pass"]}
    for key in ("steps", "examples_seen", *_COUNTS):
        if any(key in d for d in dicts):
            out[key] = sum(d.get(key, 0) for d in dicts)
    out["total_params"] = dicts[0]["total_params"]
    out["wall_seconds"] = round(sum(d["wall_seconds"] for d in dicts), 3)
    return {**out, **parts, "parts": list(parts)}
