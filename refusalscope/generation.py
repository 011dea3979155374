"""Batched generation: chat template, left padding, KV cache, greedy by default.

`generate_rows` is the pure loop (handle + prompts -> rows); `run_generate` wraps it in a run
folder with resume. Interventions are `(site, fn)` hooks installed around generation, so steering
and ablation plug in without touching this code.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from refusalscope.cpu_kernels import onednn_linears
from refusalscope.errors import UserError
from refusalscope.models.hooks import HookFn

log = logging.getLogger(__name__)

GENERATIONS = "generations.jsonl"
ProgressFn = Callable[[int, int, float], None]  # (prompts done in this batch, new tokens, seconds)


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate. Saved in the run manifest; decides the run's content id."""

    model: str
    split: str = "eval"
    n: int = 64
    harmless: bool = False
    prompts_file: str | None = None  # a user's prompt file instead of a built split
    adapter: str | None = None
    max_new_tokens: int = 128
    seed: int = 0
    system_prompt: str | None = None
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    steer: str | None = None  # a resolved `interp.steering.SteerSpec` string (file + sha256)
    baseline: str | None = None  # run to compare with (`score` then reports Refusal Drift)
    # A finished weights-attack run (any registered attack of kind weights): the model is
    # generated from as that attack's `apply` leaves it (`run_generate`'s `attacked`).
    attack_run: str | None = None
    # The registered runtime defense(s) whose `Defense.generation` fields this run carries
    # ("steer", or "a+b"): a label `fit` reads (`study.points`); it changes nothing here.
    defense: str | None = None

    def __post_init__(self) -> None:
        from refusalscope.data.load import SPLITS

        if self.n < 1:
            raise UserError(f"--n must be at least 1 (got {self.n})")
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be at least 1 (got {self.max_new_tokens})")
        if self.temperature < 0:
            raise UserError(f"--temperature must be >= 0 (got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1] (got {self.top_p})")
        if self.prompts_file is None and self.split not in SPLITS:
            raise UserError(f"unknown split {self.split!r}: one of {', '.join(SPLITS)}")

    def to_dict(self) -> dict[str, Any]:
        """Every field; `attack_run` and `defense` only when set, so every other run's manifest
        and content id are what they were before the fields existed."""
        d = asdict(self)
        for k in ("attack_run", "defense"):
            if d[k] is None:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerateConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def check_baseline(cfg: GenerateConfig) -> GenerateConfig:
    """Validate `cfg.baseline` and name it by run id (or absolute path outside the runs folder).

    The baseline must be a generate run over the same prompts: same split or prompt file and
    the same harmful/harmless side. Nothing is checked when no baseline is named.
    """
    from dataclasses import replace

    from refusalscope.paths import runs_dir
    from refusalscope.runs import Run

    if cfg.baseline is None:
        return cfg
    base = Run.open(cfg.baseline)
    bc = base.manifest.config
    if base.manifest.command != "generate":
        raise UserError(f"--baseline {base.id} is a {base.manifest.command!r} run, "
                        "not a generate run")
    mine = (cfg.prompts_file, None if cfg.prompts_file else cfg.split, cfg.harmless)
    theirs = (bc.get("prompts_file"), None if bc.get("prompts_file") else bc.get("split"),
              bool(bc.get("harmless", False)))
    if mine != theirs:
        raise UserError(f"--baseline {base.id} was generated over other prompts "
                        f"(split/prompts/harmless {theirs} vs {mine}); pick a baseline run "
                        "over the same prompts")
    inside = base.path.resolve().parent == runs_dir().resolve()
    return replace(cfg, baseline=base.id if inside else str(base.path.resolve()))


def _batch_seed(seed: int, ids: Sequence[str]) -> int:
    """Sampling seed for a batch, from the run seed and its prompt ids (stable across resumes)."""
    h = hashlib.sha256(f"{seed}|{'|'.join(ids)}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def _eos_ids(handle: Any) -> set[int]:
    ids: set[int] = set()
    for src in (handle.base_model.generation_config.eos_token_id, handle.tokenizer.eos_token_id):
        if isinstance(src, int):
            ids.add(src)
        elif src:
            ids.update(src)
    return ids


def _split_completion(tokens: list[int], eos: set[int]) -> tuple[list[int], int, str]:
    """(response tokens without eos/padding, tokens generated incl. eos, finish reason)."""
    for i, t in enumerate(tokens):
        if t in eos:
            return tokens[:i], i + 1, "eos"
    return tokens, len(tokens), "length"


def generate_batch(handle: Any, texts: list[str], cfg: GenerateConfig, *,
                   seed: int = 0, static_cache: bool = False) -> list[dict[str, Any]]:
    """Generate for one batch of formatted prompts; returns response, token counts, finish reason.

    Default: our own KV-cached loop (`decode.decode`) that drops finished rows from the batch.
    `static_cache=True` (GPU, `--compile`): `model.generate` with a static KV cache, which
    transformers compiles; finished rows then keep running until the batch ends.
    """
    from refusalscope.decode import decode

    tok = handle.tokenizer
    enc = tok(texts, return_tensors="pt", padding=True,
              add_special_tokens=not handle.has_chat_template).to(handle.device)
    eos = _eos_ids(handle)
    if static_cache:
        width = enc["input_ids"].shape[1]
        completions = _hf_generate(handle, enc, cfg, seed)[:, width:].tolist()
    else:
        completions = decode(handle.model, enc["input_ids"], enc["attention_mask"],
                             max_new_tokens=cfg.max_new_tokens, eos_ids=eos,
                             temperature=cfg.temperature, top_p=cfg.top_p, seed=seed)
    rows = []
    for i, tokens in enumerate(completions):
        resp, n_new, reason = _split_completion(tokens, eos)
        rows.append({
            "response": tok.decode(resp, skip_special_tokens=True),
            "prompt_tokens": int(enc["attention_mask"][i].sum()),
            "new_tokens": n_new,
            "finish_reason": reason,
        })
    return rows


def _hf_generate(handle: Any, enc: Any, cfg: GenerateConfig, seed: int) -> Any:
    import torch

    kwargs: dict[str, Any] = dict(max_new_tokens=cfg.max_new_tokens,
                                  pad_token_id=handle.tokenizer.pad_token_id,
                                  cache_implementation="static")
    if cfg.temperature > 0:
        torch.manual_seed(seed)
        kwargs.update(do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    with torch.inference_mode():
        return handle.model.generate(**enc, **kwargs)


def generate_rows(handle: Any, prompts: Sequence[Any], cfg: GenerateConfig, *,
                  batch_size: int = 16, interventions: Sequence[tuple[str, HookFn]] = (),
                  static_cache: bool = False, onednn: bool = True,
                  on_batch: ProgressFn | None = None) -> Iterator[dict[str, Any]]:
    """Yield one row per prompt (`data.load.Prompt`), batch by batch, longest prompts first.

    Sorting by length keeps padding small and surfaces out-of-memory on the first batch.
    On a float32 CPU model the linears run through oneDNN while generating (`onednn=False`
    keeps MKL; see `cpu_kernels`).

    Example:
        rows = list(generate_rows(handle, load_split("eval", n=8), GenerateConfig(model="x")))
    """
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    texts = {p.id: handle.format_prompt(p.prompt, cfg.system_prompt) for p in prompts}
    lengths = {pid: len(handle.tokenizer(t, add_special_tokens=False)["input_ids"])
               for pid, t in texts.items()}
    order = sorted(prompts, key=lambda p: (-lengths[p.id], p.id))
    with onednn_linears(handle.model, enabled=onednn), handle.hooks(interventions):
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            t0 = time.perf_counter()
            outs = generate_batch(handle, [texts[p.id] for p in batch], cfg,
                                  seed=_batch_seed(cfg.seed, [p.id for p in batch]),
                                  static_cache=static_cache)
            dt = time.perf_counter() - t0
            if on_batch is not None:
                on_batch(len(batch), sum(o["new_tokens"] for o in outs), dt)
            for p, o in zip(batch, outs, strict=True):
                yield {"id": p.id, "split": p.split, "label": p.label, "source": p.source,
                       "category": p.category, "prompt": p.prompt, "model": handle.name, **o}


def generation_ledger(handle: Any, rows: Sequence[dict[str, Any]], seconds: float = 0.0) -> Any:
    """The work of generating `rows` (each with `prompt_tokens`, `new_tokens`) by the shared
    ledger (`refusalscope.compute`): each prompt run once, each new token fed back once.

    Example:
        led = generation_ledger(handle, list(generate_rows(handle, prompts, cfg)))
        led.flops
    """
    from refusalscope.compute import Ledger, count_params

    led = Ledger(count_params(handle.model, trained=False), wall_seconds=seconds)
    for r in rows:
        led.generation(int(r["prompt_tokens"]), int(r["new_tokens"]))
    return led


def load_prompts(cfg: GenerateConfig) -> list[Any]:
    """The prompts a config asks for: a built split, or a user's prompt file (first n)."""
    from refusalscope.data.load import load_prompt_file, load_split

    if cfg.prompts_file is not None:
        label = "harmless" if cfg.harmless else "harmful"
        prompts = load_prompt_file(cfg.prompts_file, label=label)
        return prompts[: cfg.n]
    return load_split(cfg.split, harmless=cfg.harmless, n=cfg.n)


def _open_for_resume(path: str, cfg: GenerateConfig) -> tuple[Any, set[str]]:
    """Open an interrupted generate run; drop a torn last line; return it and its finished ids."""
    from refusalscope.fileio import read_jsonl, write_jsonl
    from refusalscope.runs import Run

    run = Run.open(path)
    if run.manifest.command != "generate":
        raise UserError(f"{run.id} is a {run.manifest.command!r} run, not a generate run")
    if GenerateConfig.from_dict(run.manifest.config) != cfg:
        raise UserError(f"--resume {run.id}: its config differs from the options given; "
                        "pass the same options (or none but --resume)")
    gen = run.file(GENERATIONS)
    rows = read_jsonl(gen) if gen.exists() else []
    if gen.exists() and gen.stat().st_size and not gen.read_bytes().endswith(b"\n"):
        write_jsonl(gen, rows)  # a kill cut the last line: rewrite without it before appending
    return run, {r["id"] for r in rows}


def run_generate(cfg: GenerateConfig, *, options: Any = None, batch_size: int = 16,
                 resume: str | None = None, interventions: Sequence[tuple[str, HookFn]] = (),
                 static_cache: bool = False, on_start: Callable[[int], None] | None = None,
                 on_batch: ProgressFn | None = None,
                 attacked: Callable[[Any], Any] | None = None) -> Any:
    """Generate into a run folder (`generations.jsonl`, one row per prompt); resumable.

    Rows are appended and fsynced as batches finish, so an interrupted run keeps its work and
    `resume=<run>` skips every finished prompt id. `attacked`: the function that turns the
    loaded model into the one `cfg.attack_run` names (`attacks.runner.weights_applier`; the
    attacks import this module, so it cannot build it); given exactly when `attack_run` is.
    """
    from refusalscope.fileio import append_jsonl, atomic_write_json, read_jsonl
    from refusalscope.models.handle import ModelHandle
    from refusalscope.models.registry import size_fields
    from refusalscope.runs import Run

    from refusalscope.models.pull import resolve

    # An unknown or broken model fails first (a registry model is pulled once, a .gguf hashed once).
    trust = bool(options is not None and options.trust_remote_code)
    cfg = check_baseline(cfg)  # cheap: a wrong --baseline fails before any model is pulled
    if (cfg.attack_run is None) != (attacked is None):
        raise UserError(f"generating from a weights attack's model needs its run and its apply "
                        f"together (attack_run {cfg.attack_run!r}); `refusalscope study run` "
                        "resumes such a run")
    resolved = resolve(cfg.model, trust_remote_code=trust)
    prompts = load_prompts(cfg)  # bad input fails before weights are loaded or a run is made
    run, done = _open_for_resume(resume, cfg) if resume is not None else (None, set())
    handle = ModelHandle.from_resolved(resolved, adapter=cfg.adapter, options=options)
    if attacked is not None:
        handle = attacked(handle)
    if cfg.steer is not None:  # a `SteerSpec` string, pinned by sha256 (see interp.steering)
        from refusalscope.interp.steering import SteerSpec

        interventions = [*interventions, *SteerSpec.parse(cfg.steer).hooks(handle)]
    if run is None:
        run = Run.create("generate", cfg.to_dict(), model=cfg.model, seed=cfg.seed,
                         harmful_content=not cfg.harmless,
                         input_runs=[cfg.baseline] if cfg.baseline else None)
    todo = [p for p in prompts if p.id not in done]
    run.manifest.status = "started"
    run.manifest.extra["model"] = {
        "source": handle.source, "n_params": handle.n_params(), **size_fields(handle),
        "n_layers": handle.n_layers,
        "d_model": handle.d_model, "chat_template": handle.has_chat_template,
        "adapter": handle.adapter}
    run.manifest.extra["n_prompts"] = len(prompts)
    run.save()
    if on_start is not None:
        on_start(len(todo))
    t0 = time.perf_counter()
    with run.guard():
        for row in generate_rows(handle, todo, cfg, batch_size=batch_size,
                                 interventions=interventions, static_cache=static_cache,
                                 on_batch=on_batch):
            append_jsonl(run.file(GENERATIONS), row)
    # compute of every row (a resumed run's earlier ones too); wall time of this invocation
    compute = generation_ledger(handle, read_jsonl(run.file(GENERATIONS))
                                if run.file(GENERATIONS).exists() else [],
                                time.perf_counter() - t0).to_dict()
    atomic_write_json(run.file("compute.json"), compute)
    run.manifest.extra["compute"] = compute
    run.finish("success")
    return run
