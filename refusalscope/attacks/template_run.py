"""`attack template` as a run folder: jailbreak templates applied to requests, evaluated.

Files: `templates.json` (the templates used: id, family, source, slot, full text),
`attacked_prompts.jsonl` (one row per seed x template x request: id, prompt = the attacked
text, goal, template_id, family, seed, slot; `refusalscope generate --prompts` reads it) and,
when evaluated, `eval.jsonl` (greedy responses to each distinct attacked prompt and to each bare
request, the baseline, with refusal labels) and `result.json` (attack success rate = share not
refused, with 95% CIs, overall / per family / per template, next to the baseline; compute).
The layout mirrors `attack gcg` (`gcg_run`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from refusalscope.attacks.templates import (Template, apply, families, library,
                                            load_template_file, sample, select)
from refusalscope.errors import UserError

log = logging.getLogger(__name__)
ATTACKED, TEMPLATES, EVAL, RESULT = ("attacked_prompts.jsonl", "templates.json", "eval.jsonl",
                                     "result.json")
DEFAULT_MAX_TEMPLATE_TOKENS = 600


@dataclass(frozen=True)
class TemplateRunConfig:
    """A whole `attack template` invocation. `max_template_tokens` 0 = no cap (needs a model
    otherwise: tokens are counted with its tokenizer, on the template with an empty request)."""

    model: str | None = None
    templates: str = "default"
    template_file: str | None = None
    template_file_sha256: str | None = None
    split: str = "eval"
    prompts_file: str | None = None
    n: int = 16
    n_templates: int | None = None  # per family and seed; None = every selected template
    seeds: tuple[int, ...] = (0,)
    max_template_tokens: int = 0
    evaluate: bool = False
    max_new_tokens: int = 64
    classifier: str | None = "minilm-outcome-v5"  # ensemble scorer beside the heuristic, if present

    def __post_init__(self) -> None:
        from refusalscope.data.load import SPLITS

        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.n < 1 or self.max_new_tokens < 1:
            raise UserError("--n and --max-new-tokens must be at least 1")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds must be distinct integers (got {list(self.seeds)})")
        if self.n_templates is None and len(self.seeds) > 1:
            raise UserError("several --seeds need --n-templates (without it every selected "
                            "template is used, the same for each seed)")
        if self.n_templates is not None and self.n_templates < 1:
            raise UserError(f"--n-templates must be at least 1 (got {self.n_templates})")
        if self.max_template_tokens < 0:
            raise UserError(f"--max-template-tokens must be >= 0 (got {self.max_template_tokens})")
        if self.model is None and (self.evaluate or self.max_template_tokens):
            raise UserError("--evaluate and --max-template-tokens need --model")
        if self.prompts_file is None and self.split not in SPLITS:
            raise UserError(f"unknown split {self.split!r}: one of {', '.join(SPLITS)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemplateRunConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def load_goals(cfg: TemplateRunConfig) -> list[Any]:
    """The first `cfg.n` requests of the split or prompt file; fewer there -> `UserError`."""
    from refusalscope.data.load import load_prompt_file, load_split

    if cfg.prompts_file is not None:
        got, where = load_prompt_file(cfg.prompts_file), cfg.prompts_file
    else:
        got, where = load_split(cfg.split), f"split {cfg.split}"
    if cfg.n > len(got):
        raise UserError(f"--n {cfg.n} is more than the {len(got)} prompts in {where}")
    return got[: cfg.n]


def selected_templates(cfg: TemplateRunConfig) -> list[Template]:
    """The templates `cfg.templates` names (user file included), before any length cap.

    Checks the sampling too (`--n-templates` over a family's size fails here), so bad input
    fails before a model is loaded.
    """
    pool = list(library())
    if cfg.template_file is not None:
        pool += load_template_file(cfg.template_file)
    chosen = select(cfg.templates, pool)
    sample(chosen, cfg.n_templates, cfg.seeds[0])
    return chosen


def choose_templates(cfg: TemplateRunConfig, chosen: list[Template], tokenizer: Any = None
                     ) -> tuple[dict[int, list[Template]], list[str]]:
    """Templates per seed from `chosen`, and the ids the length cap dropped (counted with
    `tokenizer` on the template applied to an empty request)."""
    dropped: list[str] = []
    if cfg.max_template_tokens:
        def n_tokens(t: Template) -> int:
            return len(tokenizer(apply(t, ""), add_special_tokens=False)["input_ids"])

        dropped = [t.id for t in chosen if n_tokens(t) > cfg.max_template_tokens]
        kept = [t for t in chosen if t.id not in set(dropped)]
        gone = [f for f in families(chosen) if f not in families(kept)]
        if gone:  # a family silently missing from the per-family ASR would mislead
            raise UserError(f"every template of family {gone[0]!r} in the selection is longer "
                            f"than --max-template-tokens {cfg.max_template_tokens}; raise it "
                            "(0 = no cap) or select other templates")
        if dropped:
            log.warning("%d of %d selected templates are longer than %d tokens and left out",
                        len(dropped), len(chosen), cfg.max_template_tokens)
        chosen = kept
    return {s: sample(chosen, cfg.n_templates, s) for s in cfg.seeds}, dropped


def attacked_rows(goals: list[Any], per_seed: dict[int, list[Template]]) -> list[dict[str, Any]]:
    """One row per seed x template x goal, in that order; ids ``<goal>|<template>|s<seed>``."""
    rows = []
    for seed, temps in per_seed.items():
        for t in temps:
            for g in goals:
                rows.append({"id": f"{g.id}|{t.id}|s{seed}", "prompt": apply(t, g.prompt),
                             "goal": g.prompt, "goal_id": g.id, "template_id": t.id,
                             "family": t.family, "seed": seed, "slot": t.slot,
                             "label": g.label, "category": g.category, "source": g.source,
                             "target": g.target})
    return rows


def run_template_attack(cfg: TemplateRunConfig, *, options: Any = None, batch_size: int = 8,
                        on_batch: Any = None) -> Any:
    """Apply, write the run; with `cfg.evaluate`, generate, score and write `result.json`."""
    from refusalscope.fileio import atomic_write_json, write_jsonl
    from refusalscope.runs import Run

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    goals = load_goals(cfg)
    chosen = selected_templates(cfg)  # bad input fails before weights are loaded
    handle = None
    if cfg.model is not None:
        from refusalscope.models.handle import ModelHandle

        handle = ModelHandle.load(cfg.model, options=options)
    per_seed, dropped = choose_templates(cfg, chosen, handle.tokenizer if handle else None)
    rows = attacked_rows(goals, per_seed)
    used = {t.id: t for temps in per_seed.values() for t in temps}
    run = Run.create("attack-template", cfg.to_dict(), model=cfg.model, seed=cfg.seeds[0],
                     harmful_content=True)
    try:
        write_jsonl(run.file(ATTACKED), rows)
        atomic_write_json(run.file(TEMPLATES), [t.to_dict() for t in used.values()])
        run.manifest.extra.update(seeds=list(cfg.seeds), n_rows=len(rows),
                                  templates_per_seed={str(s): [t.id for t in ts]
                                                      for s, ts in per_seed.items()},
                                  dropped_by_length=dropped)
        if handle is not None:
            from refusalscope.models.registry import size_fields

            run.manifest.extra["model"] = {"source": handle.source, "n_params": handle.n_params(),
                                           **size_fields(handle)}
        run.save()  # a run killed while evaluating still says what it holds
        if cfg.evaluate:
            from refusalscope.attacks.template_eval import evaluate

            evals, result = evaluate(handle, goals, rows, cfg, batch_size=batch_size,
                                     on_batch=on_batch)
            write_jsonl(run.file(EVAL), evals)
            result.update(dropped_by_length=dropped, max_template_tokens=cfg.max_template_tokens)
            atomic_write_json(run.file(RESULT), result)
            run.manifest.extra["compute"] = result["compute"]
    except BaseException as e:
        run.finish("error", error=f"{type(e).__name__}: {e}"[:500])
        raise
    run.finish("success")
    return run


def goal_prompt(goal: Any, row: dict[str, Any] | None = None) -> Any:
    """A `Prompt` to generate for: the bare goal, or (with `row`) its attacked text."""
    if row is None:
        return replace(goal, id=f"{goal.id}|baseline")
    return replace(goal, id=f"{goal.id}|{row['template_id']}", prompt=row["prompt"])
