"""LoRA fine-tuning attack: teach a chat model to comply, and record what that cost.

`train(handle, pairs, cfg, run)` attaches a peft LoRA adapter, trains it on (harmful prompt ->
compliant response) pairs with the loss on response tokens only, and writes into the run:
`adapter/` (peft `save_pretrained`, loadable by `generate --adapter RUN`), `loss.jsonl`,
`loss.png`, `compute.json`, and `checkpoint.pt` every `save_every` steps for `--resume`.

Reproducibility: the batch for step s is a function of (seed, s) alone and the learning rate is
constant, so a run of k steps is the first k steps of any longer run with the same config, and a
resumed run reaches the same adapter as an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from refusalscope.attacks.pairs import IGNORE, TARGET_KINDS, Pair, collate, encode_pair
from refusalscope.compute import Ledger, count_params
from refusalscope.errors import UserError
from refusalscope.models.peft_quiet import quiet_peft

if TYPE_CHECKING:
    from refusalscope.models.handle import ModelHandle

log = logging.getLogger(__name__)

COMMAND = "attack-lora"
CHECKPOINT = "checkpoint.pt"
LOSS = "loss.jsonl"
COMPUTE = "compute.json"
# model_type -> default LoRA target modules (attention projections).
DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "phi": ("q_proj", "k_proj", "v_proj", "dense"),
    "phi3": ("qkv_proj", "o_proj"),
}
_ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
StepFn = Callable[[int, int, float], None]  # (step, total steps, loss)
SnapshotFn = Callable[[int, Any, Ledger], None]  # (steps done, peft model, compute so far)


@dataclass(frozen=True)
class LoraAttackConfig:
    """One LoRA attack: what data, how long, which adapter. Saved in the run; decides its id."""

    model: str
    n_data: int = 64
    steps: int = 16
    lr: float = 2e-4
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] | None = None  # None: the family default (attention q,k,v,o)
    batch_size: int = 4
    max_len: int = 256
    seed: int = 0
    grad_checkpointing: bool = False
    target_kind: str = "auto"  # auto | advbench-target | full-response
    data_file: str | None = None  # user pairs (prompt, response columns)
    save_every: int = 8  # checkpoint every k steps for --resume (0: never)

    def __post_init__(self) -> None:
        for name in ("n_data", "steps", "rank", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 "
                                f"(got {getattr(self, name)})")
        if not self.lr > 0 or not self.alpha > 0:
            raise UserError(f"--lr and --alpha must be > 0 (got {self.lr}, {self.alpha})")
        if not 0 <= self.dropout < 1:
            raise UserError(f"--dropout must be in [0, 1) (got {self.dropout})")
        if self.max_len < 8:
            raise UserError(f"--max-len must be at least 8 (got {self.max_len})")
        if self.save_every < 0:
            raise UserError(f"--save-every must be >= 0 (got {self.save_every})")
        if self.target_kind not in TARGET_KINDS:
            raise UserError(f"unknown --target-kind {self.target_kind!r}: one of "
                            f"{', '.join(TARGET_KINDS)}")
        if self.target_modules is not None:
            if not self.target_modules or not all(m.strip() for m in self.target_modules):
                raise UserError("--target-modules must name at least one module")
            object.__setattr__(self, "target_modules", tuple(self.target_modules))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target_modules"] = list(self.target_modules) if self.target_modules else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LoraAttackConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if known.get("target_modules") is not None:
            known["target_modules"] = tuple(known["target_modules"])
        return cls(**known)


def target_modules_for(model: Any, cfg: LoraAttackConfig) -> list[str]:
    """The configured (or family default) module names, checked against the model's linears."""
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head")}
    wanted = list(cfg.target_modules or DEFAULT_TARGETS.get(model.config.model_type, _ATTN))
    unknown = [m for m in wanted if m not in names]
    if unknown:
        raise UserError(f"unknown target modules {', '.join(unknown)}: this model's linear "
                        f"layers are {', '.join(sorted(names))}")
    return wanted


def attach_lora(model: Any, cfg: LoraAttackConfig, *,
                grad_checkpointing: bool | None = None) -> Any:
    """Wrap `model` in a fresh peft LoRA adapter (init drawn from `cfg.seed`); base frozen.
    `grad_checkpointing` (None: `cfg.grad_checkpointing`) is what `memory_plan` decided."""
    import torch
    from peft import LoraConfig, get_peft_model

    targets = target_modules_for(model, cfg)
    torch.manual_seed(cfg.seed)
    lcfg = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=targets, bias="none", task_type="CAUSAL_LM")
    with quiet_peft():
        peft_model = get_peft_model(model, lcfg)
    if cfg.grad_checkpointing if grad_checkpointing is None else grad_checkpointing:
        peft_model.get_base_model().gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False})
    return peft_model


def memory_plan(handle: ModelHandle, encoded: list[tuple[list[int], int]],
                cfg: LoraAttackConfig) -> Any:
    """The step's memory estimate (`refusalscope.memory.lora_memory`) for the largest batch
    these pairs can make: `batch_size` rows padded to the longest pair, loss on the
    `batch_size` longest responses. On CUDA it turns gradient checkpointing on when the batch
    would not fit without it; on other devices only `cfg.grad_checkpointing` decides."""
    from refusalscope.memory import device_budget, lora_memory

    seq = max((len(ids) for ids, _ in encoded), default=cfg.max_len)
    responses = sorted((len(ids) - n for ids, n in encoded), reverse=True)
    rows = sum(responses[:cfg.batch_size]) if responses else cfg.batch_size * seq
    return lora_memory(handle.base_model, targets=target_modules_for(handle.model, cfg),
                       rank=cfg.rank, batch=cfg.batch_size, seq=seq, response_rows=rows,
                       budget=device_budget(handle.device),
                       force_checkpointing=cfg.grad_checkpointing)


def response_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean next-token cross-entropy over response tokens; the LM head runs only there.

    The decoder gives hidden states [B, T, d]; positions whose *next* label is a response token
    are gathered ([R, d]) and only those go through the LM head ([R, vocab]), which saves the
    head's cost and memory on prompt and padding positions. Equals the full-logits loss.
    """
    import torch.nn.functional as F

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.model(input_ids=batch["input_ids"],
                        attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"][:, 1:]
    keep = labels != IGNORE
    logits = base.get_output_embeddings()(hidden[:, :-1][keep]).float()
    cap = getattr(base.config, "final_logit_softcapping", None)
    if cap:
        logits = cap * (logits / cap).tanh()
    return F.cross_entropy(logits, labels[keep])


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Example indices for `step` (0-based): epochs are seeded permutations, read in order."""
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        perm = list(range(n))
        random.Random(f"{seed}:{epoch}").shuffle(perm)
        take = perm[offset: offset + batch_size - len(out)]
        out.extend(take)
        pos += len(take)
    return out


def train(handle: ModelHandle, pairs: list[Pair], cfg: LoraAttackConfig, run: Any, *,
          on_step: StepFn | None = None, snapshot: SnapshotFn | None = None,
          on_memory: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Train a LoRA adapter on `pairs` into `run` (resuming from its checkpoint); return compute.

    `snapshot(k, model, compute)` is called after every step k < `cfg.steps`: with the constant
    learning rate and `batch_indices` depending only on (seed, step), the state after k steps is
    exactly a k-step run's final state, so a grid saves its shorter cells from the longest one.

    `handle.model` is wrapped with a new adapter for the duration and unwrapped afterwards, so a
    grid can train cell after cell on one loaded model. Gradient checkpointing is on when asked
    for or when `memory_plan` says the batch needs it (CUDA); `on_memory(plan)` gets the
    estimate before the first step, and `compute.json` records the choice.

    Example:
        compute = train(handle, load_pairs(64), LoraAttackConfig(model="smollm2-135m"), run)
    """
    import torch

    encoded = [encode_pair(handle, p, cfg.max_len) for p in pairs]
    mem = memory_plan(handle, encoded, cfg)
    log.info("%s", mem.summary())
    run.manifest.extra["memory"] = mem.to_dict()  # saved with the manifest when the run ends
    if on_memory is not None:
        on_memory(mem)
    ckpt = mem.grad_checkpointing
    model = attach_lora(handle.model, cfg, grad_checkpointing=ckpt)
    try:
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        compute = Ledger(count_params(model), steps=0, examples_seen=0,
                         grad_checkpointing=ckpt)
        start = _load_checkpoint(run, model, opt, compute)
        model.train()
        for step in range(start, cfg.steps):
            loss = _step(model, opt, encoded, cfg, step, handle, compute)
            _log_step(run, step + 1, loss, compute)
            if on_step is not None:
                on_step(step + 1, cfg.steps, loss)
            if snapshot is not None and step + 1 < cfg.steps:
                model.eval()
                snapshot(step + 1, model, compute)
                model.train()
            if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                _save_checkpoint(run, model, opt, step + 1, compute)
        model.eval()
        model.save_pretrained(str(run.file("adapter")))
        run.file(CHECKPOINT).unlink(missing_ok=True)  # finished: the adapter is the result
        return compute.to_dict()
    finally:
        handle.model = model.unload()
        handle.model.eval()
        if ckpt:
            handle.model.gradient_checkpointing_disable()


def _step(model: Any, opt: Any, encoded: list[tuple[list[int], int]], cfg: LoraAttackConfig,
          step: int, handle: ModelHandle, compute: Ledger) -> float:
    t0 = time.perf_counter()
    rows = [encoded[i] for i in batch_indices(len(encoded), cfg.batch_size, cfg.seed, step)]
    batch = {k: v.to(handle.device) for k, v in collate(rows, handle.tokenizer.pad_token_id).items()}
    loss = response_loss(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    compute.train_step([(len(ids), len(ids) - n) for ids, n in rows], time.perf_counter() - t0)
    return float(loss.detach())


def _log_step(run: Any, step: int, loss: float, compute: Ledger) -> None:
    from refusalscope.fileio import append_jsonl

    append_jsonl(run.file(LOSS), {"step": step, "loss": round(loss, 6),
                                  "examples_seen": compute.examples_seen,
                                  "tokens_seen": compute.tokens_seen})


def _trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(run: Any, model: Any, opt: Any, step: int, compute: Ledger) -> None:
    """Adapter + optimizer + RNG + step + compute totals in one file, replaced atomically."""
    import torch

    state = {"step": step, "adapter": _trainable_state(model), "optimizer": opt.state_dict(),
             "rng_cpu": torch.get_rng_state(), "compute": compute.to_dict()}
    if torch.cuda.is_available():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    tmp = run.file(CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run.file(CHECKPOINT))


def _load_checkpoint(run: Any, model: Any, opt: Any, compute: Ledger) -> int:
    """Restore from `checkpoint.pt` if present; trim `loss.jsonl` to it. Returns the start step."""
    import torch

    from refusalscope.fileio import read_jsonl, write_jsonl

    path = run.file(CHECKPOINT)
    start = 0
    if path.is_file():
        state = torch.load(path, weights_only=True, map_location="cpu")
        named = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in state["adapter"].items():
                named[name].copy_(value)
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        if "rng_cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        compute.restore(Ledger.from_dict(state["compute"]))
        start = int(state["step"])
    loss_file = run.file(LOSS)
    if loss_file.exists():
        write_jsonl(loss_file, [r for r in read_jsonl(loss_file) if r["step"] <= start])
    return start


def plot_loss(run: Any) -> None:
    """`loss.png`: training loss per step (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from refusalscope.fileio import read_jsonl

    rows = read_jsonl(run.file(LOSS))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], marker="o", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (response tokens)")
    ax.set_title(run.manifest.model or "")
    fig.tight_layout()
    tmp = run.file("loss.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, run.file("loss.png"))
