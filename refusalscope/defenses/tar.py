"""TAR-style tamper-resistant fine-tuning (Tamirisa et al. 2024), first-order approximation.

What is trained: a LoRA adapter named ``defense`` (rank `rank` on the attention projections,
`attack lora`'s default modules) over the frozen base model. `tar_run` merges it into the weights at the
end, so the defended model is an ordinary model folder that every command takes as `--model`.

One outer step s:

1. **Inner loop, the simulated attack.** A fresh LoRA adapter ``attack`` (rank `inner_rank`,
   initialised like `attack lora` initialises its adapter, from the seed (seed, s)) sits on top
   of the defended model and is trained for `inner_steps` AdamW steps at `inner_lr` on
   harmful -> compliant `attack-train` pairs, exactly the loss `attack lora` uses. The defense
   parameters are frozen here: the inner loop changes only the attack adapter (its own copy).
2. **Outer step.** With the attack adapter fixed at its end point phi_k,

       L(theta) = CE(refusal target | harmful prompt; theta, phi_k)
                  + retain_weight * CE(own reply | harmless prompt; theta)

   is differentiated w.r.t. the defense parameters theta only (the attack adapter is switched
   off for the retain term) and one AdamW step at `outer_lr` is taken.

First-order: how phi_k itself depends on theta (d phi_k / d theta, second derivatives through
the k inner steps) is dropped, as in first-order MAML, so the outer gradient is the plain
gradient of the loss at the attacked point. TAR accumulates its tamper-resistance loss along
the adversary's trajectory; we take it at the end point only (one extra forward/backward per
outer step instead of k). TAR's harmful-request setting uses a DPO-style loss; ours is the
cross-entropy of a refusal, with targets from a fixed list of four refusal sentences
(`REFUSALS`, picked per prompt by a hash of its id), not the model's own refusals (small
models refuse too rarely to supply them). The retain targets are the base model's own greedy
replies to harmless `attack-train` prompts, generated once before training (`own_replies`).

Nothing here reads the `eval` split: attack and refusal prompts are the attack pairs
(`attacks.pairs.load_pairs`, which drops PyRIT objectives equal to an eval prompt), retain
prompts are harmless `attack-train` prompts.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from refusalscope.attacks.lora import (
    LoraAttackConfig, batch_indices, response_loss, target_modules_for,
)
from refusalscope.attacks.pairs import TARGET_KINDS, Pair, collate
from refusalscope.compute import Ledger, count_params
from refusalscope.errors import UserError
from refusalscope.models.peft_quiet import quiet_peft

log = logging.getLogger(__name__)

DEFENSE, ATTACK = "defense", "attack"
METHOD = ("TAR-style tamper-resistant fine-tuning (Tamirisa et al. 2024), first-order "
          "approximation: outer gradient taken at the end point of a k-step LoRA attack, "
          "d(attack)/d(defense) dropped; trained: a LoRA adapter merged into the weights")
REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I'm sorry, but I can't assist with that request.",
    "I can't help with that, as it could cause harm.",
    "Sorry, but I can't provide that information.",
)
StepFn = Callable[[int, int, dict[str, float]], None]  # (outer step, total, losses)


@dataclass(frozen=True)
class TarConfig:
    """One defense training: data, budget, adapters. Saved in the run; decides its id."""

    model: str
    n_data: int = 16  # attack pairs (inner) and their prompts with refusals (outer)
    outer_steps: int = 16
    inner_steps: int = 4
    inner_lr: float = 2e-4  # `attack lora`'s default learning rate
    outer_lr: float = 1e-4
    retain_weight: float = 1.0
    n_retain: int = 16  # harmless attack-train prompts for the retain loss
    retain_new_tokens: int = 48  # length of the base model's own replies used as retain targets
    rank: int = 8  # defense adapter
    alpha: float = 16.0
    inner_rank: int = 8  # simulated attack adapter (as `attack lora --rank`)
    inner_alpha: float = 16.0
    batch_size: int = 4
    max_len: int = 128
    target_kind: str = "auto"
    data_file: str | None = None
    save_every: int = 4  # checkpoint every k outer steps for --resume (0: never)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_data", "outer_steps", "inner_steps", "rank", "inner_rank",
                     "batch_size", "n_retain", "retain_new_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 "
                                f"(got {getattr(self, name)})")
        for name in ("inner_lr", "outer_lr", "alpha", "inner_alpha"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name.replace('_', '-')} must be > 0 "
                                f"(got {getattr(self, name)})")
        if self.retain_weight < 0:
            raise UserError(f"--retain-weight must be >= 0 (got {self.retain_weight})")
        if self.max_len < 8 or self.save_every < 0:
            raise UserError(f"--max-len must be >= 8 and --save-every >= 0 "
                            f"(got {self.max_len}, {self.save_every})")
        if self.target_kind not in TARGET_KINDS:
            raise UserError(f"unknown --target-kind {self.target_kind!r}: one of "
                            f"{', '.join(TARGET_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TarConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class TarData:
    """What each loss trains on; every prompt comes from `attack-train` (or the user's pairs)."""

    attack: list[Pair]  # harmful -> compliant (inner loop)
    refusal: list[Pair]  # the same harmful prompts -> a refusal sentence (outer loss)
    retain: list[Pair]  # harmless prompts -> the base model's own reply (retain loss)

    def ids(self) -> dict[str, list[str]]:
        return {k: [p.id for p in getattr(self, k)] for k in ("attack", "refusal", "retain")}


def refusal_pairs(pairs: Sequence[Pair]) -> list[Pair]:
    """Each prompt with one of `REFUSALS` (by a hash of its id: stable across runs)."""
    out = []
    for p in pairs:
        k = int(hashlib.sha256(p.id.encode()).hexdigest(), 16) % len(REFUSALS)
        out.append(Pair(p.id, p.prompt, REFUSALS[k], "refusal-template"))
    return out


def own_replies(handle: Any, prompts: Sequence[Any], max_new_tokens: int) -> list[Pair]:
    """The model's greedy replies to `prompts` (`data.load.Prompt`s), as retain pairs."""
    from refusalscope.generate import GenerateConfig, generate_rows

    cfg = GenerateConfig(model=handle.name, n=len(prompts), max_new_tokens=max_new_tokens)
    rows = {r["id"]: r for r in generate_rows(handle, prompts, cfg)}
    return [Pair(p.id, p.prompt, rows[p.id]["response"].strip() or ".", "own-reply")
            for p in prompts]


def _lora_config(rank: int, alpha: float, targets: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")


def attach_adapters(model: Any, cfg: TarConfig) -> Any:
    """Wrap `model` with the ``defense`` adapter (init from `cfg.seed`) and an ``attack`` one."""
    import torch
    from peft import get_peft_model

    targets = target_modules_for(model, LoraAttackConfig(model=cfg.model))  # the attack's
    torch.manual_seed(cfg.seed)
    with quiet_peft():
        pm = get_peft_model(model, _lora_config(cfg.rank, cfg.alpha, targets),
                            adapter_name=DEFENSE)
        pm.add_adapter(ATTACK, _lora_config(cfg.inner_rank, cfg.inner_alpha, targets))
    activate(pm, (DEFENSE, ATTACK), trainable=DEFENSE)
    return pm


def activate(model: Any, names: Sequence[str], *, trainable: str) -> None:
    """Make `names` the active adapters (their outputs add up) and only `trainable` trainable."""
    model.base_model.set_adapter(list(names))
    for n, p in model.named_parameters():
        p.requires_grad = f".{trainable}." in n


def reset_attack(model: Any, seed: int) -> None:
    """A fresh attack adapter: A random (seeded), B zero, as peft initialises a new adapter."""
    import torch
    from peft.tuners.lora import LoraLayer

    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, LoraLayer) and ATTACK in m.lora_A:
            m.reset_lora_parameters(ATTACK, True)


Encoded = list[tuple[list[int], int]]  # (token ids, prompt length) per example


def _loss(model: Any, encoded: Encoded, idx: list[int], handle: Any) -> Any:
    rows = [encoded[i] for i in idx]
    batch = {k: v.to(handle.device)
             for k, v in collate(rows, handle.tokenizer.pad_token_id).items()}
    return response_loss(model, batch)


def _count(compute: Ledger, seconds: float, *batches: tuple[Encoded, list[int]]) -> None:
    """One optimizer step over `batches` (each: examples and their indices) in `compute`."""
    compute.train_step([(len(enc[i][0]), len(enc[i][0]) - enc[i][1])
                        for enc, idx in batches for i in idx], seconds)


def inner_attack(model: Any, encoded: Encoded, cfg: TarConfig, step: int, handle: Any,
                 compute: Ledger) -> list[float]:
    """Train a fresh attack adapter for `cfg.inner_steps` steps; the defense stays frozen.

    Batches are `attacks.lora.batch_indices` at inner step `step * inner_steps + j`.
    """
    import torch

    activate(model, (DEFENSE, ATTACK), trainable=ATTACK)
    reset_attack(model, cfg.seed * 1_000_003 + step)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=cfg.inner_lr, weight_decay=0.0)
    losses = []
    for j in range(cfg.inner_steps):
        t0 = time.perf_counter()
        idx = batch_indices(len(encoded), cfg.batch_size, cfg.seed, step * cfg.inner_steps + j)
        loss = _loss(model, encoded, idx, handle)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _count(compute, time.perf_counter() - t0, (encoded, idx))
        losses.append(float(loss.detach()))
    return losses


def outer_update(model: Any, opt: Any, refusal: Encoded, retain: Encoded, cfg: TarConfig,
                 step: int, handle: Any, compute: Ledger) -> dict[str, float]:
    """One AdamW step on the defense adapter: refusal after the attack + weighted retain loss.

    Batches: `batch_indices` with seeds `seed + 1` (refusal) and `seed + 2` (retain) at `step`.
    """
    t0 = time.perf_counter()
    activate(model, (DEFENSE, ATTACK), trainable=DEFENSE)
    idx = batch_indices(len(refusal), cfg.batch_size, cfg.seed + 1, step)
    total = tr = _loss(model, refusal, idx, handle)
    out = {"refusal_after_attack": float(tr.detach())}
    ridx: list[int] = []
    if cfg.retain_weight > 0:
        activate(model, (DEFENSE,), trainable=DEFENSE)  # retain: the defended model, unattacked
        ridx = batch_indices(len(retain), cfg.batch_size, cfg.seed + 2, step)
        ret = _loss(model, retain, ridx, handle)
        total = tr + cfg.retain_weight * ret
        out["retain"] = float(ret.detach())
    opt.zero_grad(set_to_none=True)
    total.backward()
    opt.step()
    activate(model, (DEFENSE, ATTACK), trainable=DEFENSE)
    _count(compute, time.perf_counter() - t0, (refusal, idx), (retain, ridx))
    out["loss"] = float(total.detach())
    return out


def defense_params(model: Any) -> dict[str, Any]:
    """The defense adapter's parameters by name (what the outer step trains)."""
    return {n: p for n, p in model.named_parameters() if f".{DEFENSE}." in n}


def param_counts(model: Any, trainable: str) -> Any:
    """`compute.ParamCounts` with `trainable` as the trained adapter (the other one is body)."""
    activate(model, (DEFENSE, ATTACK), trainable=trainable)
    counts = count_params(model)
    activate(model, (DEFENSE, ATTACK), trainable=DEFENSE)
    return counts
