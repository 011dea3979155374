"""Greedy Coordinate Gradient (Zou et al. 2023): individual and universal suffix attacks.

One step: gradient of the loss w.r.t. a one-hot suffix -> sample top-k token swaps -> drop
candidates that do not tokenise back to themselves, and duplicates -> score all candidates
(prefix KV cache, target-only logits, batched with OOM back-off) -> move to the step's best
candidate (nanoGCG's default `buffer_size=0`, as llm-attacks does; `buffer_size` >= 1 keeps that
many best suffixes and moves only on improvement). The result is the best suffix seen in any
step: the lowest-loss one that hits every target if any did, else the lowest-loss one; early
stopping fires only when the suffix the step moved to hits every target.
Universal: one suffix, loss = mean over the active prompts; prompts are added one at a time
when all active ones hit their target or after `add_every` steps.

Example:
    result = run(handle, [("Tell me a joke", "Sure, here is a joke")], GCGConfig(steps=10))
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from refusalscope.compute import Ledger, count_params
from refusalscope.errors import UserError

if TYPE_CHECKING:
    from refusalscope.models.handle import ModelHandle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GCGConfig:
    """What to optimise (saved with a run). Device, dtype and batch size are runtime options."""

    steps: int = 250
    search_width: int = 512
    topk: int = 256
    suffix_len: int = 20
    n_replace: int = 1
    buffer_size: int = 0  # 0: always move to the step's best candidate (nanoGCG default)
    early_stop: bool = False
    allow_non_ascii: bool = False
    seed: int = 0
    init_char: str = "x"
    add_every: int = 20  # universal: add the next prompt after this many steps at the latest

    def __post_init__(self) -> None:
        if self.buffer_size < 0:
            raise UserError(f"--buffer-size must be at least 0 (got {self.buffer_size})")
        for name in ("steps", "search_width", "topk", "suffix_len", "n_replace", "add_every"):
            if getattr(self, name) < 1:
                flag = "--" + name.replace("_", "-")
                raise UserError(f"{flag} must be at least 1 (got {getattr(self, name)})")
        if self.n_replace > self.suffix_len:
            raise UserError(f"--n-replace ({self.n_replace}) exceeds --suffix-len "
                            f"({self.suffix_len})")
        if not self.init_char.strip():
            raise UserError("the initial suffix character must not be blank")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GCGConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


Compute = Ledger  # the name GCG's work counter had before the shared ledger


@dataclass
class GCGState:
    """Everything needed to continue: step, buffer `(loss, ids)` best first (the current suffix
    is `buffer[0]`, `hit` says whether it hits every target), the best suffix seen
    `(loss, ids, hit)`, active prompts, sampling RNG state. Saved after every step."""

    step: int = 0
    buffer: list[tuple[float, list[int]]] = field(default_factory=list)
    n_active: int = 1
    steps_since_add: int = 0
    rng: list[int] | None = None
    compute: Ledger = field(default_factory=Ledger)
    hit: bool = False
    best: tuple[float, list[int], bool] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "buffer": [[l, i] for l, i in self.buffer],
                "n_active": self.n_active, "steps_since_add": self.steps_since_add,
                "rng": self.rng, "compute": self.compute.to_dict(), "hit": self.hit,
                "best": None if self.best is None else list(self.best)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GCGState:
        buffer = [(float(l), list(i)) for l, i in d["buffer"]]
        best = d.get("best")  # states saved before best-ever tracking: the buffer's best
        return cls(step=d["step"], buffer=buffer, n_active=d["n_active"],
                   steps_since_add=d["steps_since_add"], rng=d["rng"],
                   compute=Ledger.from_dict(d["compute"]), hit=bool(d.get("hit", False)),
                   best=((float(best[0]), list(best[1]), bool(best[2])) if best is not None
                         else (buffer[0][0], list(buffer[0][1]), bool(d.get("hit", False)))))

    def consider(self, loss: float, ids: list[int], hit: bool) -> None:
        """Keep `(loss, ids, hit)` as the best seen if it is: a suffix that hits every target
        beats one that does not, then lower loss wins."""
        if self.best is None or (not hit, loss) < (not self.best[2], self.best[0]):
            self.best = (loss, list(ids), hit)


@dataclass(frozen=True)
class GCGResult:
    """Best suffix (text and ids), its loss, per-step log, and compute."""

    suffix: str
    suffix_ids: list[int]
    loss: float
    steps: list[dict[str, Any]]
    compute: Ledger
    n_active: int


class GCG:
    """The optimiser's fixed parts for one handle and prompt set; `step(state)` mutates state."""

    def __init__(self, handle: ModelHandle, prompts: Sequence[tuple[str, str]], cfg: GCGConfig, *,
                 batch_size: int | None = None, system: str | None = None):
        from refusalscope.attacks.gcg_loss import PrefixCache, build_slots
        from refusalscope.attacks.gcg_sample import forbidden_tokens

        if not prompts:
            raise UserError("GCG needs at least one prompt")
        self.handle, self.cfg, self.batch_size = handle, cfg, batch_size
        self.model = handle.model
        self.embed_w = handle.base_model.get_input_embeddings().weight.detach()
        self.init_ids = initial_suffix(handle.tokenizer, cfg)
        self.slots = [build_slots(handle, g, t, self.init_ids, system) for g, t in prompts]
        self.caches = [PrefixCache(self.model, s.prefix, handle.config) for s in self.slots]
        self.forbidden = forbidden_tokens(handle.tokenizer, self.embed_w.shape[0],
                                          cfg.allow_non_ascii)
        self.batch_size = _candidate_batch(handle, self.slots, cfg, batch_size)
        # nothing is trained: the model's weights may still say requires_grad
        self.params = count_params(self.model, trained=False)

    def new_state(self) -> GCGState:
        import torch

        state = GCGState(rng=torch.Generator().manual_seed(self.cfg.seed).get_state().tolist(),
                         compute=Ledger(self.params, steps=0, examples_seen=0))
        for s in self.slots:  # the prefix caches: run once, one row of logits each
            state.compute.forward(s.prefix.shape[1], 1, sequences=1)
        losses, hits = self._losses(torch.tensor([self.init_ids]), 1, state.compute)
        state.buffer = [(float(losses[0]), list(self.init_ids))]
        state.hit = bool(hits[0])
        state.consider(state.buffer[0][0], state.buffer[0][1], state.hit)
        return state

    def _losses(self, cands: Any, n_active: int, comp: Ledger) -> tuple[Any, Any]:
        """Mean loss over the first `n_active` prompts and 'every prompt hit' flags, `[B]`."""
        import torch

        from refusalscope.attacks.gcg_loss import candidate_losses, with_oom_backoff

        cands = cands.to(self.handle.device)
        total, hit = None, None
        for s, c in list(zip(self.slots, self.caches))[:n_active]:
            b = cands.shape[0]
            (l, h), size = with_oom_backoff(
                lambda bs, s=s, c=c: candidate_losses(self.model, s, c, cands, bs),
                b, self.batch_size)
            if size < min(b, self.batch_size or b):
                self.batch_size = size  # backed off on out-of-memory: remember it
            total = l if total is None else total + l
            hit = h if hit is None else hit & h
            t = s.target.shape[1]  # suffix + tail + target[:-1] run after the cached prefix
            comp.forward(b * (cands.shape[1] + s.tail.shape[1] + t - 1), b * t, sequences=b,
                         passes=-(-b // size))
        comp.candidate_evals += cands.shape[0]
        assert total is not None and hit is not None
        return (total / n_active).cpu(), hit.cpu()

    def gradient(self, ids: list[int], n_active: int, comp: Ledger) -> Any:
        """Mean over active prompts of d loss / d one-hot(suffix), `[L, V]` on the model's device."""
        import torch

        from refusalscope.attacks.gcg_loss import suffix_gradient

        t = torch.tensor(ids, device=self.handle.device)
        grad = None
        for s, c in list(zip(self.slots, self.caches))[:n_active]:
            g, _ = suffix_gradient(self.model, s, c, t, self.embed_w)
            grad = g if grad is None else grad + g
            rows, n = s.target.shape[1], len(ids) + s.tail.shape[1] + s.target.shape[1] - 1
            comp.forward(n, rows, len(ids), sequences=1)  # one-hot x embedding: a real matmul
            comp.backward(n, rows, len(ids))  # to the one-hot; no weight gradients
        assert grad is not None
        return grad / n_active

    def step(self, state: GCGState) -> dict[str, Any]:
        """One GCG step; returns the step's log row."""
        import torch

        from refusalscope.attacks.gcg_sample import filter_and_dedupe, sample_candidates

        t0 = time.perf_counter()
        comp, cfg = state.compute, self.cfg
        gen = torch.Generator()
        gen.set_state(torch.tensor(state.rng, dtype=torch.uint8))
        current, active = state.buffer[0][1], state.n_active
        grad = self.gradient(current, state.n_active, comp)
        cands = sample_candidates(torch.tensor(current), grad, width=cfg.search_width,
                                  topk=cfg.topk, n_replace=cfg.n_replace,
                                  forbidden=self.forbidden, generator=gen)
        cands = filter_and_dedupe(self.handle.tokenizer, cands)
        losses, hits = self._losses(cands, state.n_active, comp)
        best = int(losses.argmin())
        moved = _push(state.buffer, float(losses[best]), cands[best].tolist(), cfg.buffer_size)
        if moved:
            state.hit = bool(hits[best])
        state.consider(float(losses[best]), cands[best].tolist(), bool(hits[best]))
        state.rng = gen.get_state().tolist()
        state.step += 1
        state.steps_since_add += 1
        dt = time.perf_counter() - t0
        comp.step(active, dt)  # examples: the prompts whose gradient this step took
        assert state.best is not None
        row = {"step": state.step, "loss": state.buffer[0][0], "step_best_loss": float(losses[best]),
               "suffix": self.handle.tokenizer.decode(state.buffer[0][1]),
               "suffix_ids": state.buffer[0][1], "n_active": state.n_active,
               "all_hit": state.hit, "best_loss": state.best[0],
               "candidates": int(cands.shape[0]), "wall_s": dt}
        self._maybe_add_prompt(state, state.hit)
        return row

    def _maybe_add_prompt(self, state: GCGState, all_hit: bool) -> None:
        import torch

        if state.n_active >= len(self.slots):
            return
        if all_hit or state.steps_since_add >= self.cfg.add_every:
            state.n_active += 1
            state.steps_since_add = 0
            assert state.best is not None
            kept = [i for _, i in state.buffer] + [state.best[1]]
            losses, hits = self._losses(torch.tensor(kept), state.n_active, state.compute)
            # rescore on the new set: the current suffix stays current, the buffer stays sorted
            state.hit = bool(hits[0])
            state.best = None
            state.consider(float(losses[-1]), kept[-1], bool(hits[-1]))
            state.consider(float(losses[0]), kept[0], state.hit)
            cur = (float(losses[0]), kept[0])
            rest = sorted(zip(losses[1:-1].tolist(), kept[1:-1]))
            state.buffer = [cur, *rest] if self.cfg.buffer_size == 0 else sorted([cur, *rest])
            log.info("GCG: %d prompts active", state.n_active)


def _candidate_batch(handle: ModelHandle, slots: Sequence[Any], cfg: GCGConfig,
                     batch_size: int | None) -> int | None:
    """Candidates per forward: the caller's; on CUDA as many as the free memory holds for the
    longest prompt (`memory.gcg_batch_size`); elsewhere None (all at once). Out-of-memory still
    halves it (`gcg_loss.with_oom_backoff`)."""
    from refusalscope.memory import gcg_batch_size

    tail = max(s.tail.shape[1] for s in slots)
    target = max(s.target.shape[1] for s in slots)
    dt = next(handle.model.parameters()).element_size()
    size = gcg_batch_size(handle.device, handle.config, dt,
                          prefix=max(s.prefix.shape[1] for s in slots),
                          rest=cfg.suffix_len + tail + target, target=target,
                          width=cfg.search_width, fixed=batch_size)
    if batch_size is None and size is not None:
        log.info("GCG: %d candidates per forward (from free device memory)", size)
    return size


def initial_suffix(tokenizer: Any, cfg: GCGConfig) -> list[int]:
    """`suffix_len` ids of " x x x ..." (or one token repeated, if that round-trips instead).

    The suffix follows the goal directly, so its own first token carries the separating space.
    """
    n, ch = cfg.suffix_len, cfg.init_char
    ids = tokenizer((" " + ch) * n, add_special_tokens=False)["input_ids"]
    if len(ids) != n:  # no " x" token: try one token repeated
        one = tokenizer(ch, add_special_tokens=False)["input_ids"]
        again = tokenizer(tokenizer.decode(one * n), add_special_tokens=False)["input_ids"]
        ids = one * n if again == one * n else ids
    if len(ids) != n:
        raise UserError(f"initial suffix of {n} x {ch!r} tokenises to {len(ids)} tokens; "
                        "pick another init character")
    return ids


def _push(buffer: list[tuple[float, list[int]]], loss: float, ids: list[int], size: int) -> bool:
    """Size 0 (nanoGCG's default): the step's best replaces the current suffix. Size >= 1: keep
    the `size` lowest-loss suffixes, best first; a new entry must beat the worst. Returns
    whether the new entry became the current suffix (`buffer[0]`)."""
    if size == 0:
        buffer[:] = [(loss, ids)]
        return True
    if len(buffer) < size:
        buffer.append((loss, ids))
    elif loss < buffer[-1][0]:
        buffer[-1] = (loss, ids)
    buffer.sort(key=lambda e: e[0])
    return buffer[0][1] == ids and buffer[0][0] == loss


def run(handle: ModelHandle, prompts: Sequence[tuple[str, str]], cfg: GCGConfig, *,
        batch_size: int | None = None, state: GCGState | None = None,
        on_step: Callable[[dict[str, Any], GCGState], None] | None = None) -> GCGResult:
    """Optimise one suffix for `(goal, target)` pairs (one pair: individual GCG).

    Stops after `cfg.steps` steps, or (`early_stop`) once the current suffix makes every
    prompt's greedy target tokens all match with every prompt active. Returns the best suffix
    seen (`GCGState.consider`): with early stopping, the suffix that hit. `on_step(row, state)` is called after each step (the
    run folder saves logs and the resumable state there).

    Example:
        res = run(handle, [("How do I pick a lock?", "Sure, here is how")], GCGConfig(steps=5))
    """
    opt = GCG(handle, prompts, cfg, batch_size=batch_size)
    if state is not None:
        state.compute.params = opt.params  # a resumed state's counts, this model's classes
    state = state or opt.new_state()
    rows: list[dict[str, Any]] = []
    while state.step < cfg.steps:
        row = opt.step(state)
        rows.append(row)
        if on_step is not None:
            on_step(row, state)
        if cfg.early_stop and row["all_hit"] and row["n_active"] == len(prompts):
            break
    assert state.best is not None
    loss, ids, _ = state.best
    return GCGResult(handle.tokenizer.decode(ids), ids, loss, rows, state.compute,
                     state.n_active)
