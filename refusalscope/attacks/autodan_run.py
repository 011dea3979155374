"""AutoDAN as a registered attack: `ATTACK` (name "autodan", kind "prompt", `AutoDANConfig`).

A run folder (`runner.run_attack`) holds `autodan.jsonl` (one row per generation: best and
mean target loss, target hit, greedy check, wall time), `state.json` (population, losses,
momentum word table, RNG, compute; rewritten atomically after every generation: what
`--resume` reads), `attacked_prompts.jsonl` (the rendered jailbreak prompt per request),
`eval.jsonl` and `result.json` (the common schema; the evolved text is the artefact).
Evaluation judges replies against the bare request, never the jailbreak template.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refusalscope.attacks.autodan import AutoDANConfig, AutoDANState, run as search
from refusalscope.attacks.autodan_prompts import render
from refusalscope.attacks.base import PROMPT, AttackResult, Progress, load_state, step_saver
from refusalscope.attacks.evaluate import DEFAULT_TARGET
from refusalscope.errors import UserError

if TYPE_CHECKING:
    from refusalscope.compute import ParamCounts
    from refusalscope.data.load import Prompt
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run

AUTODAN_TOKENS = 400  # an AutoDAN prompt: template body + request
TARGET_TOKENS = 10


def read_texts(path: str | Path) -> tuple[list[str], str]:
    """Starting texts from a file (one per line, blank lines skipped) and the file's sha256."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"no texts file {p}")
    data = p.read_bytes()
    texts = [ln.strip() for ln in data.decode("utf-8").splitlines() if ln.strip()]
    if not texts:
        raise UserError(f"{p} holds no texts (one jailbreak text per line)")
    return texts, hashlib.sha256(data).hexdigest()


def texts_of(cfg: AutoDANConfig) -> list[str] | None:
    """The config's starting texts (None: AutoDAN's own); a changed file is a `UserError`."""
    if cfg.texts_file is None:
        return None
    texts, sha = read_texts(cfg.texts_file)
    if cfg.texts_sha256 is not None and sha != cfg.texts_sha256:
        raise UserError(f"{cfg.texts_file} changed since the run started (sha256 differs)")
    return texts


class AutoDANAttack:
    """AutoDAN-HGA (Liu et al. 2024): a genetic search over jailbreak texts."""

    name = "autodan"
    kind = PROMPT
    config_cls = AutoDANConfig
    log_file = "autodan.jsonl"
    work = "prefill"  # the measured rate `study plan` times it at
    study_grid = ("generations",)
    study_fixed = ("population", "mode", "n", "split", "max_new_tokens")
    # A study's defaults are cheap CPU settings (the config's 64 x 100 is the paper's scale
    # divided by 4 in population); seed-plan.toml sets them explicitly.
    study_defaults = {"generations": 4, "population": 8, "n": 2, "max_new_tokens": 32}

    def cost(self, cfg: AutoDANConfig, model_info: ParamCounts, n_requests: int = 1) -> float:
        """Generations x population x requests fitness forwards of a template + target."""
        from refusalscope.compute import forward_flops

        return float(cfg.generations * cfg.population * n_requests
                     * forward_flops(model_info, AUTODAN_TOKENS + TARGET_TOKENS, TARGET_TOKENS))

    def resources(self, cfg: AutoDANConfig | None) -> dict[str, float]:
        return {"cpus": 2, "gpus": 1}

    def run(self, handle: ModelHandle, requests: list[Prompt], cfg: AutoDANConfig, *,
            run: Run | None = None, progress: Progress | None = None,
            batch_size: int | None = None) -> AttackResult:
        """Search one jailbreak text for `requests` (continuing from `run`'s saved state)."""
        state = load_state(run, self.log_file, "generation", lambda s: s.logged,
                           AutoDANState.from_dict)
        res = search(handle, [(p.prompt, p.target or DEFAULT_TARGET) for p in requests], cfg,
                     batch_size=batch_size, state=state, texts=texts_of(cfg),
                     on_generation=step_saver(run, self.log_file, progress))
        art = {"body": res.body, "name": res.name, "developer": res.developer}
        return AttackResult(self.name, self.kind, cfg.to_dict(), art, res.compute.to_dict(),
                            loss=res.loss, log=res.generations,
                            extra={**art, "target_hit": res.target_hit, "stop": res.stop,
                                   "generations": res.compute.steps,
                                   "n_requests": len(requests)})

    def apply(self, handle: ModelHandle, result: AttackResult,
              requests: list[Prompt]) -> list[dict[str, Any]]:
        a = result.artefact
        return [{"request": i, "prompt": render(a["body"], p.prompt, a["name"], a["developer"])}
                for i, p in enumerate(requests)]


ATTACK = AutoDANAttack()
