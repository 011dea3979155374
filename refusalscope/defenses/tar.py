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

**Adversary distribution.** With `adv_lrs`, `adv_ranks`, `adv_steps` or `adv_modules` set, each
outer step draws its simulated attack from that distribution (one value per axis, uniformly,
from a generator seeded by (seed, step): `adversary`), as TAR samples its adversaries (learning
rate, schedule and data kind, per inner loop); the attack adapter is then rebuilt with the
drawn rank and modules (`attn`: `attack lora`'s default, `mlp`: the MLP projections, `all`:
both). An empty axis keeps the single value (`inner_lr`, `inner_rank`, `inner_steps`, attn).
The inner ledger counts every drawn attack with the parameter counts of the adapter built at
the start (rank `inner_rank` on attn): a drawn adapter's own trainable count changes the FLOPs
by 2 x (its trainable parameters) per token, well under 1% at rank <= 64 on these models.

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
import random
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
MODULE_SETS = ("attn", "mlp", "all")  # simulated attack's LoRA modules (see `module_sets`)


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
    # adversary distribution (each outer step draws one value per axis; empty: the fixed one)
    adv_lrs: tuple[float, ...] = ()
    adv_ranks: tuple[int, ...] = ()  # alpha scales with the rank: inner_alpha / inner_rank
    adv_steps: tuple[int, ...] = ()
    adv_modules: tuple[str, ...] = ()  # of MODULE_SETS

    def __post_init__(self) -> None:
        self._check_adversaries()
        for name in ("n_data", "outer_steps", "inner_steps", "rank", "inner_rank",
                     "batch_size", "n_retain", "retain_new_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 "
                                f"(got {getattr(self, name)})")
        for name, flag in (("inner_lr", "--inner-lr"), ("outer_lr", "--outer-lr"),
                           ("alpha", "--lora-alpha"), ("inner_alpha", "--inner-lora-alpha")):
            if not getattr(self, name) > 0:
                raise UserError(f"{flag} must be > 0 (got {getattr(self, name)})")
        if self.retain_weight < 0:
            raise UserError(f"--retain-weight must be >= 0 (got {self.retain_weight})")
        if self.max_len < 8 or self.save_every < 0:
            raise UserError(f"--max-len must be >= 8 and --save-every >= 0 "
                            f"(got {self.max_len}, {self.save_every})")
        if self.target_kind not in TARGET_KINDS:
            raise UserError(f"unknown --target-kind {self.target_kind!r}: one of "
                            f"{', '.join(TARGET_KINDS)}")

    def _check_adversaries(self) -> None:
        for name in ("adv_lrs", "adv_ranks", "adv_steps", "adv_modules"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        flag = "--adv-"
        if not all(v > 0 for v in self.adv_lrs):
            raise UserError(f"{flag}lrs must all be > 0 (got {list(self.adv_lrs)})")
        for name in ("adv_ranks", "adv_steps"):
            if not all(isinstance(v, int) and v >= 1 for v in getattr(self, name)):
                raise UserError(f"{flag}{name[4:]} must all be integers >= 1 "
                                f"(got {list(getattr(self, name))})")
        bad = [m for m in self.adv_modules if m not in MODULE_SETS]
        if bad:
            raise UserError(f"unknown {flag}modules {bad}: each one of {', '.join(MODULE_SETS)}")

    @property
    def sampled(self) -> bool:
        """True when the simulated attack is drawn from a distribution (any `adv_*` set)."""
        return bool(self.adv_lrs or self.adv_ranks or self.adv_steps or self.adv_modules)

    @property
    def max_inner_steps(self) -> int:
        """The longest simulated attack (batches of outer step s start at s x this)."""
        return max(self.adv_steps or (self.inner_steps,))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("adv_lrs", "adv_ranks", "adv_steps", "adv_modules"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TarConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Adversary:
    """One simulated attack: AdamW at `lr` for `steps` steps on a rank-`rank` LoRA over
    `modules` (one of MODULE_SETS)."""

    lr: float
    rank: int
    alpha: float
    steps: int
    modules: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def adversary(cfg: TarConfig, step: int) -> Adversary:
    """The simulated attack of outer step `step`: drawn from the `adv_*` axes (uniformly, by a
    generator seeded by (seed, step), so a resumed run draws the same), else the fixed one.

    Example:
        adversary(TarConfig(model="m", adv_lrs=(1e-4, 1e-3)), 0).lr  # 1e-4 or 1e-3
    """
    rng = random.Random(f"tar-adversary:{cfg.seed}:{step}")
    rank = rng.choice(cfg.adv_ranks or (cfg.inner_rank,))
    return Adversary(lr=rng.choice(cfg.adv_lrs or (cfg.inner_lr,)), rank=rank,
                     alpha=cfg.inner_alpha * rank / cfg.inner_rank,
                     steps=rng.choice(cfg.adv_steps or (cfg.inner_steps,)),
                     modules=rng.choice(cfg.adv_modules or ("attn",)))


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
    from refusalscope.generation import GenerateConfig, generate_rows

    cfg = GenerateConfig(model=handle.name, n=len(prompts), max_new_tokens=max_new_tokens)
    rows = {r["id"]: r for r in generate_rows(handle, prompts, cfg)}
    return [Pair(p.id, p.prompt, rows[p.id]["response"].strip() or ".", "own-reply")
            for p in prompts]


def _lora_config(rank: int, alpha: float, targets: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=targets,
                      bias="none", task_type="CAUSAL_LM")


def module_sets(model: Any, cfg: TarConfig) -> dict[str, list[str]]:
    """Module names per MODULE_SETS entry on the unwrapped `model`: ``attn`` = `attack lora`'s
    default targets, ``mlp`` = the linear layers inside each block's ``mlp``, ``all`` = both."""
    import torch

    attn = target_modules_for(model, LoraAttackConfig(model=cfg.model))
    mlp = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                  if isinstance(m, torch.nn.Linear) and ".mlp." in n})
    if not mlp and {"mlp", "all"} & set(cfg.adv_modules):
        raise UserError("this model has no linear layers under '.mlp.': leave 'mlp' and 'all' "
                        "out of adv_modules")
    return {"attn": attn, "mlp": mlp, "all": attn + [m for m in mlp if m not in attn]}


def attach_adapters(model: Any, cfg: TarConfig) -> Any:
    """Wrap `model` with the ``defense`` adapter (init from `cfg.seed`) and an ``attack`` one.

    The module sets a drawn adversary may train are kept on the wrapper (`tar_module_sets`).
    """
    import torch
    from peft import get_peft_model

    sets = module_sets(model, cfg)
    targets = sets["attn"]  # the attack's
    torch.manual_seed(cfg.seed)
    with quiet_peft():
        pm = get_peft_model(model, _lora_config(cfg.rank, cfg.alpha, targets),
                            adapter_name=DEFENSE)
        pm.add_adapter(ATTACK, _lora_config(cfg.inner_rank, cfg.inner_alpha, targets))
    pm.tar_module_sets = sets
    activate(pm, (DEFENSE, ATTACK), trainable=DEFENSE)
    return pm


def rebuild_attack(model: Any, adv: Adversary) -> None:
    """Replace the ``attack`` adapter by one of `adv`'s rank, alpha and modules (a drawn one)."""
    with quiet_peft():
        model.delete_adapter(ATTACK)
        model.add_adapter(ATTACK, _lora_config(adv.rank, adv.alpha,
                                               model.tar_module_sets[adv.modules]))


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
    """Train a fresh attack adapter (`adversary(cfg, step)`: the fixed one, or one drawn from
    the distribution) for its steps; the defense stays frozen.

    Batches are `attacks.lora.batch_indices` at inner step `step * cfg.max_inner_steps + j`.
    """
    import torch

    adv = adversary(cfg, step)
    if cfg.sampled:
        rebuild_attack(model, adv)
    activate(model, (DEFENSE, ATTACK), trainable=ATTACK)
    reset_attack(model, cfg.seed * 1_000_003 + step)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=adv.lr, weight_decay=0.0)
    losses = []
    for j in range(adv.steps):
        t0 = time.perf_counter()
        idx = batch_indices(len(encoded), cfg.batch_size, cfg.seed,
                            step * cfg.max_inner_steps + j)
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
