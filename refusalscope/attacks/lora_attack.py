"""The LoRA fine-tuning attack as a registered attack: `ATTACK` (name "lora", kind "weights",
config `LoraAttackConfig`).

`run` trains one adapter on (harmful request -> compliant response) pairs (`lora.train`:
checkpoints in the run folder, so a second call on the same run continues); `apply` returns
a handle of the same model with that adapter on. The requests a weights attack is evaluated
on are not its training data: the pairs come from the config (`n_data`, `data_file`).
Sweeps share training trajectories across `steps` values (`attacks.grid`); the study's
LoRA node runs `grid` for that reason (`study_node`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from refusalscope.attacks.base import WEIGHTS, AttackResult, Progress
from refusalscope.attacks.lora import LOSS, LoraAttackConfig

if TYPE_CHECKING:
    from refusalscope.compute import ParamCounts
    from refusalscope.data.load import Prompt
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run


class LoraAttack:
    """LoRA fine-tuning on compliant pairs (Lermen et al. 2023; Qi et al. 2023)."""

    name = "lora"
    kind = WEIGHTS
    config_cls = LoraAttackConfig
    log_file = LOSS
    work = "train"  # the measured rate `study plan` times it at
    study_grid = ("n_data", "steps", "lr", "rank", "alpha")
    study_fixed = ("batch_size", "max_len", "target_kind", "data", "dropout")
    # A study trains on 16 pairs by default (the config's 64 is the CLI's larger cell).
    study_defaults = {"n_data": 16, "data": None}

    def cost(self, cfg: LoraAttackConfig, model_info: ParamCounts, n_requests: int = 1) -> float:
        """`steps` optimizer steps of batch x max_len tokens, the loss on half of them."""
        from refusalscope.compute import train_flops

        tokens = cfg.batch_size * cfg.max_len
        return float(cfg.steps * train_flops(model_info, tokens, tokens // 2))

    def resources(self, cfg: LoraAttackConfig | None) -> dict[str, float]:
        return {"cpus": 2, "gpus": 1}

    def run(self, handle: ModelHandle, requests: list[Prompt], cfg: LoraAttackConfig, *,
            run: Run | None = None, progress: Progress | None = None,
            batch_size: int | None = None) -> AttackResult:
        """Train the adapter into `run` (a temporary folder without one: the adapter is kept
        there until the process ends). `requests` are not trained on."""
        from refusalscope.attacks.grid import finish_cell, start_cell
        from refusalscope.attacks.lora import train
        from refusalscope.attacks.pairs import load_pairs
        from refusalscope.fileio import process_tempdir, read_jsonl
        from refusalscope.runs import Run

        pairs = load_pairs(cfg.n_data, seed=cfg.seed, target_kind=cfg.target_kind,
                           data_file=cfg.data_file)
        own = run or Run(process_tempdir("refusalscope-lora-"), _manifest(cfg))

        def on_step(step: int, total: int, loss: float) -> None:
            if progress is not None:
                progress({"step": step, "steps": total, "loss": loss})

        start_cell(own, handle, pairs)
        t0 = time.perf_counter()
        compute = train(handle, pairs, cfg, own, on_step=on_step)
        finish_cell(own, compute, time.perf_counter() - t0, finish=False)
        log = read_jsonl(own.file(LOSS))
        return AttackResult(self.name, self.kind, cfg.to_dict(),
                            {"adapter": str(own.file("adapter"))}, compute,
                            loss=log[-1]["loss"] if log else None, log=log)

    def apply(self, handle: ModelHandle, result: AttackResult,
              requests: list[Prompt]) -> ModelHandle:
        """A handle of the same model with the trained adapter on (the base is shared)."""
        from peft import PeftModel

        from refusalscope.models.handle import ModelHandle
        from refusalscope.models.peft_quiet import quiet_peft

        with quiet_peft():
            model = PeftModel.from_pretrained(handle.model, result.artefact["adapter"])
        model.eval()
        return ModelHandle(model, handle.tokenizer, handle.name, source=handle.source,
                           adapter=result.artefact["adapter"])


def _manifest(cfg: LoraAttackConfig) -> Any:
    from refusalscope.runs import Manifest

    return Manifest(command="attack-lora", config=cfg.to_dict(), model=cfg.model, seed=cfg.seed)


ATTACK = LoraAttack()
