"""Jailbreak templates as a registered attack: `ATTACK` (name "template", kind "prompt",
config `TemplateConfig`).

`run` chooses the templates (per seed, `n_templates` per family, longer than
`max_template_tokens` model tokens left out); `apply` puts each request into each chosen
template: one row per seed x template x request, id ``<request>|<template>|s<seed>``. A run
folder (`runner.run_attack`) holds `templates.json` (the templates used: id, family, source,
slot, full text), `attacked_prompts.jsonl` (`refusalscope generate --prompts` reads it) and,
when evaluated, `eval.jsonl` (each request bare once and each distinct request x template
text once, even when several seeds drew the template) and `result.json`: the common schema
plus, per scorer (the study's and the heuristic beside it), ASR overall, best-of-K
(`any_template`), per family, template and seed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from refusalscope.attacks.base import PROMPT, AttackResult, Progress
from refusalscope.attacks.evaluate import best_of
from refusalscope.attacks.templates import (Template, apply, families, library,
                                            load_template_file, sample, select)
from refusalscope.errors import UserError

if TYPE_CHECKING:
    from refusalscope.compute import ParamCounts
    from refusalscope.data.load import Prompt
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run

log = logging.getLogger(__name__)
TEMPLATES = "templates.json"


@dataclass(frozen=True)
class TemplateConfig:
    """Which templates. `max_template_tokens` is counted with the model's tokenizer on the
    template applied to an empty request (0 = no cap; without a model nothing is counted)."""

    templates: str = "default"  # ids, families, `default`, `all` (comma list)
    template_file: str | None = None
    template_file_sha256: str | None = None
    n_templates: int | None = None  # per family and seed; None = every selected template
    seeds: tuple[int, ...] = (0,)
    max_template_tokens: int = 600

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds must be distinct integers (got {list(self.seeds)})")
        if self.n_templates is None and len(self.seeds) > 1:
            raise UserError("several --seeds need --n-templates (without it every selected "
                            "template is used, the same for each seed)")
        if self.n_templates is not None and self.n_templates < 1:
            raise UserError(f"--n-templates must be at least 1 (got {self.n_templates})")
        if self.max_template_tokens < 0:
            raise UserError(f"--max-template-tokens must be >= 0 (got {self.max_template_tokens})")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TemplateConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def selected_templates(cfg: TemplateConfig) -> list[Template]:
    """The templates `cfg.templates` names (user file included), before any length cap.
    Checks the sampling too (`--n-templates` over a family's size fails here)."""
    pool = list(library())
    if cfg.template_file is not None:
        pool += load_template_file(cfg.template_file)
    chosen = select(cfg.templates, pool)
    sample(chosen, cfg.n_templates, cfg.seeds[0])
    return chosen


def choose_templates(cfg: TemplateConfig, chosen: list[Template], tokenizer: Any = None
                     ) -> tuple[dict[int, list[Template]], list[str]]:
    """Templates per seed from `chosen`, and the ids the length cap dropped (counted with
    `tokenizer` on the template applied to an empty request; no tokenizer, no cap)."""
    dropped: list[str] = []
    if cfg.max_template_tokens and tokenizer is not None:
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


class TemplateAttack:
    """Published jailbreak templates (DAN, in-the-wild, PyRIT) around each request."""

    name = "template"
    kind = PROMPT
    config_cls = TemplateConfig
    log_file = TEMPLATES
    work = "generate"
    study_grid = ()  # the spec's `seeds` give each node its one sampling seed
    study_fixed = ("templates", "n_templates", "max_template_tokens", "n", "split",
                   "max_new_tokens")  # mode: universal (every request; a study node's default)
    # A study attacks each seed's draw of 1 template per family of the default set, on 2
    # requests (cheap CPU settings; every selected template would be 7 per request).
    study_defaults = {"n_templates": 1, "n": 2, "max_new_tokens": 32}

    def cost(self, cfg: TemplateConfig, model_info: ParamCounts, n_requests: int = 1) -> float:
        """Choosing templates costs no model FLOPs (their replies are the evaluation's)."""
        return 0.0

    def resources(self, cfg: TemplateConfig | None) -> dict[str, float]:
        return {"cpus": 2, "gpus": 1}  # a study node evaluates: it generates

    def check(self, handle: ModelHandle | None, requests: list[Prompt],
              cfg: TemplateConfig) -> None:
        """Bad selections, and (with a model) a family the length cap empties, fail here,
        before a run folder is made."""
        chosen = selected_templates(cfg)
        if handle is not None:
            choose_templates(cfg, chosen, handle.tokenizer)

    def run(self, handle: ModelHandle | None, requests: list[Prompt], cfg: TemplateConfig, *,
            run: Run | None = None, progress: Progress | None = None,
            batch_size: int | None = None) -> AttackResult:
        """Choose templates per seed; with `run`, write them to `templates.json`."""
        from refusalscope.compute import Ledger

        chosen = selected_templates(cfg)
        per_seed, dropped = choose_templates(cfg, chosen,
                                             handle.tokenizer if handle is not None else None)
        used = {t.id: t for temps in per_seed.values() for t in temps}
        if run is not None:
            from refusalscope.fileio import atomic_write_json

            atomic_write_json(run.file(TEMPLATES), [t.to_dict() for t in used.values()])
        art = {"templates_per_seed": {str(s): [t.id for t in ts] for s, ts in per_seed.items()},
               "dropped_by_length": dropped}
        if run is not None:
            run.manifest.extra.update(seeds=list(cfg.seeds), **art)
        return AttackResult(self.name, self.kind, cfg.to_dict(), art, Ledger().to_dict(),
                            extra={"seeds": list(cfg.seeds), "dropped_by_length": dropped,
                                   "max_template_tokens": cfg.max_template_tokens,
                                   "n_goals": len(requests)})

    def apply(self, handle: ModelHandle | None, result: AttackResult,
              requests: list[Prompt]) -> list[dict[str, Any]]:
        by_id = {t.id: t for t in library()}
        cfg = TemplateConfig.from_dict(result.config)
        if cfg.template_file is not None:
            by_id.update({t.id: t for t in load_template_file(cfg.template_file)})
        per_seed = {int(s): [by_id[i] for i in ids]
                    for s, ids in result.artefact["templates_per_seed"].items()}
        index = {g.id: i for i, g in enumerate(requests)}
        return [{**{k: v for k, v in r.items() if k not in ("goal", "label", "category",
                                                            "source", "target")},
                 "request": index[r["goal_id"]], "eval_id": f"{r['goal_id']}|{r['template_id']}"}
                for r in attacked_rows(requests, per_seed)]

    def report(self, result: AttackResult, items: list[dict[str, Any]],
               scorers: list[str]) -> dict[str, Any]:
        """result.json's template keys: per scorer, ASR overall / best-of-K / by family,
        template and seed; the main scorer's rates flat."""
        from refusalscope.scoring.score import asr_summary

        base = {r["request_id"]: r for r in result.rows if r["variant"] == "baseline"}
        att = {r["id"]: r for r in result.rows if r["variant"] == "attacked"}
        goals = list(base)

        def summaries(name: str) -> dict[str, Any]:
            def of(it: dict[str, Any]) -> str:
                return att[it["eval_id"]][f"outcome_{name}"]

            def grouped(key: str) -> dict[str, Any]:
                keys = dict.fromkeys(str(it[key]) for it in items)
                return {k: asr_summary([of(it) for it in items if str(it[key]) == k])
                        for k in keys}

            return {"baseline": asr_summary([base[g][f"outcome_{name}"] for g in goals]),
                    "attacked": asr_summary([of(it) for it in items]),
                    "any_template": asr_summary([best_of([of(it) for it in items
                                                          if it["goal_id"] == g])
                                                 for g in goals]),
                    "by_family": grouped("family"), "by_template": grouped("template_id"),
                    "by_seed": grouped("seed")}

        asr = {name: summaries(name) for name in scorers}
        main = asr[scorers[0]]
        return {"n_attacked_rows": len(items), "n_generations": len(result.rows),
                "main_scorer": scorers[0], "asr": asr,
                "asr_attacked": main["attacked"]["asr"], "asr_baseline": main["baseline"]["asr"],
                "not_refused_attacked": main["attacked"]["not_refused"]["rate"],
                "not_refused_baseline": main["baseline"]["not_refused"]["rate"]}


ATTACK = TemplateAttack()
