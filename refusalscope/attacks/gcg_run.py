"""GCG as a registered attack: `ATTACK` (name "gcg", kind "prompt", config `GCGConfig`).

A run folder (`runner.run_attack`) holds `gcg.jsonl` (one row per step: loss, best suffix,
wall time, candidates), `state.json` (suffix buffer + RNG + compute, rewritten atomically
every step: what `--resume` reads), `attacked_prompts.jsonl` (request + suffix), `eval.jsonl`
and `result.json` (the common schema; the suffix is the artefact).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from refusalscope.attacks.base import PROMPT, AttackResult, Progress, load_state, step_saver
from refusalscope.attacks.evaluate import DEFAULT_TARGET, evaluate_pairs, load_requests
from refusalscope.attacks.gcg import GCGConfig, GCGState, run as optimise

if TYPE_CHECKING:
    from refusalscope.compute import ParamCounts
    from refusalscope.data.load import Prompt
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run

__all__ = ["ATTACK", "DEFAULT_TARGET", "GCGAttack", "evaluate_pairs", "load_requests"]
PROMPT_TOKENS = 48  # a chat-formatted request (template + median 11-word request)
TARGET_TOKENS = 10
TAIL_TOKENS = 5  # chat template after the suffix, up to the assistant's first token


class GCGAttack:
    """Greedy Coordinate Gradient (Zou et al. 2023), one suffix over the run's requests."""

    name = "gcg"
    kind = PROMPT
    config_cls = GCGConfig
    log_file = "gcg.jsonl"
    work = "gcg"  # the measured rate `study plan` times it at
    study_grid = ("steps",)
    study_fixed = ("search_width", "topk", "suffix_len", "mode", "n", "split",
                   "max_new_tokens")
    # A study's defaults are the cheap CPU settings of the quickstart era (the config's 250
    # steps x 512 candidates take hours per prompt on a CPU); seed-plan.toml sets the paper's.
    study_defaults = {"steps": 20, "search_width": 64, "topk": 64, "suffix_len": 10,
                      "n": 4, "max_new_tokens": 32}

    def cost(self, cfg: GCGConfig, model_info: ParamCounts, n_requests: int = 1) -> float:
        """Per step and request (all active: universal GCG adds them over time) the gradient
        over suffix + tail + target positions and `search_width` candidate forwards over the
        same; each request's prefix once."""
        from refusalscope.compute import forward_flops

        p = model_info
        rest = cfg.suffix_len + TAIL_TOKENS + TARGET_TOKENS - 1
        grad = 2 * forward_flops(p, rest, TARGET_TOKENS, cfg.suffix_len)
        cands = cfg.search_width * forward_flops(p, rest, TARGET_TOKENS)
        return float(n_requests * (cfg.steps * (grad + cands)
                                   + forward_flops(p, PROMPT_TOKENS, 1)))

    def resources(self, cfg: GCGConfig | None) -> dict[str, float]:
        return {"cpus": 2, "gpus": 1}

    def run(self, handle: ModelHandle, requests: list[Prompt], cfg: GCGConfig, *,
            run: Run | None = None, progress: Progress | None = None,
            batch_size: int | None = None) -> AttackResult:
        """Optimise one suffix for `requests` (continuing from `run`'s saved state)."""
        state = load_state(run, self.log_file, "step", lambda s: s.step, GCGState.from_dict)
        pairs = [(p.prompt, p.target or DEFAULT_TARGET) for p in requests]
        res = optimise(handle, pairs, cfg, batch_size=batch_size, state=state,
                       on_step=step_saver(run, self.log_file, progress))
        return AttackResult(self.name, self.kind, cfg.to_dict(),
                            {"suffix": res.suffix, "suffix_ids": res.suffix_ids},
                            res.compute.to_dict(), loss=res.loss, log=res.steps,
                            extra={"suffix": res.suffix, "suffix_ids": res.suffix_ids,
                                   "n_prompts": len(pairs), "n_active": res.n_active})

    def apply(self, handle: ModelHandle, result: AttackResult,
              requests: list[Prompt]) -> list[dict[str, Any]]:
        return [{"request": i, "prompt": p.prompt + result.artefact["suffix"]}
                for i, p in enumerate(requests)]


ATTACK = GCGAttack()
