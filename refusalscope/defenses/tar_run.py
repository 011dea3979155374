"""`defend tar` as a run: the outer loop with checkpoints, the defended model saved in the run,
and `TAR`, the registered defense (`defenses.registry`; kind weights).

The run folder holds `model/` (the base model with the defense adapter merged in, safetensors +
tokenizer + a `refusalscope.json` stamp naming base and defense; load it with `--model RUN` or
`--model RUN/model`), `defense_adapter/` (the unmerged peft adapter), `retain.jsonl` (the
retain targets), `loss.jsonl`/`loss.png`, `compute.json` and, while it runs, `checkpoint.pt`
every `save_every` outer steps for `--resume`. Batches and the attack adapter's initialisation
depend only on (seed, step), so a resumed run reaches the same defended weights.

Compute (`compute.json`): the inner and the outer steps are each counted by the shared ledger
(`refusalscope.compute`; the inner loop trains the attack adapter, the outer step the defense
adapter), plus the generation of the retain replies (their token counts re-tokenised from the
saved texts, so approximate: the end token is not counted); `combine` sums the three parts.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refusalscope.compute import Ledger, combine
from refusalscope.defenses.base import WEIGHTS, DefenseResult, Progress
from refusalscope.defenses.tar import (
    DEFENSE, METHOD, StepFn, TarConfig, TarData, activate, attach_adapters, defense_params,
    inner_attack, outer_update, own_replies, param_counts, refusal_pairs,
)
from refusalscope.errors import UserError
from refusalscope.models.peft_quiet import quiet_peft

if TYPE_CHECKING:
    from refusalscope.compute import ParamCounts
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run

log = logging.getLogger(__name__)

COMMAND = "defend-tar"
MODEL_DIR = "model"
CHECKPOINT = "checkpoint.pt"
LOSS = "loss.jsonl"
RETAIN = "retain.jsonl"


def train_tar(handle: Any, data: TarData, cfg: TarConfig, run: Any, *,
              on_step: StepFn | None = None) -> dict[str, Any]:
    """Run the outer loop into `run` (resuming from its checkpoint); merge the defense into
    `handle.model` (the handle then holds the defended model); return the compute totals.

    Example:
        compute = train_tar(handle, data, TarConfig(model="smollm2-135m", outer_steps=2), run)
    """
    import torch

    from refusalscope.attacks.pairs import encode_pair
    from refusalscope.fileio import append_jsonl

    enc = {k: [encode_pair(handle, p, cfg.max_len) for p in getattr(data, k)]
           for k in ("attack", "refusal", "retain")}
    model = attach_adapters(handle.model, cfg)
    opt = torch.optim.AdamW(list(defense_params(model).values()), lr=cfg.outer_lr,
                            weight_decay=0.0)
    logs = {"inner": Ledger(param_counts(model, "attack"), steps=0, examples_seen=0),
            "outer": Ledger(param_counts(model, DEFENSE), steps=0, examples_seen=0)}
    start = _load_checkpoint(run, model, opt, logs)
    model.train()
    for step in range(start, cfg.outer_steps):
        inner = inner_attack(model, enc["attack"], cfg, step, handle, logs["inner"])
        out = outer_update(model, opt, enc["refusal"], enc["retain"], cfg, step, handle,
                           logs["outer"])
        row = {"step": step + 1, **{k: round(v, 6) for k, v in out.items()},
               "inner_first": round(inner[0], 6), "inner_last": round(inner[-1], 6)}
        append_jsonl(run.file(LOSS), row)
        if on_step is not None:
            on_step(step + 1, cfg.outer_steps, row)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.outer_steps:
            _save_checkpoint(run, model, opt, step + 1, logs)
    model.eval()
    activate(model, (DEFENSE,), trainable=DEFENSE)
    _save_adapter(model, run.file("defense_adapter"))
    handle.model = model.merge_and_unload(adapter_names=[DEFENSE])
    handle.model.eval()
    for p in handle.model.parameters():
        p.requires_grad_(False)
    return {k: v.to_dict() for k, v in logs.items()}


def _save_adapter(model: Any, out: Path) -> None:
    """The defense adapter as a plain peft folder (peft nests a non-default name one deeper)."""
    import shutil

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with quiet_peft():
        model.save_pretrained(str(tmp), selected_adapters=[DEFENSE])
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp / DEFENSE, out)
    shutil.rmtree(tmp)


def _save_checkpoint(run: Any, model: Any, opt: Any, step: int,
                     logs: dict[str, Ledger]) -> None:
    """Defense adapter + outer optimizer + RNG + step + compute, replaced atomically."""
    import torch

    state = {"step": step, "optimizer": opt.state_dict(), "rng_cpu": torch.get_rng_state(),
             "defense": {n: p.detach().cpu().clone() for n, p in defense_params(model).items()},
             "compute": {k: v.to_dict() for k, v in logs.items()}}
    tmp = run.file(CHECKPOINT + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, run.file(CHECKPOINT))


def _load_checkpoint(run: Any, model: Any, opt: Any, logs: dict[str, Ledger]) -> int:
    """Restore from `checkpoint.pt` if present; trim `loss.jsonl` to it. Returns the start step."""
    import torch

    from refusalscope.fileio import read_jsonl, write_jsonl

    start = 0
    if run.file(CHECKPOINT).is_file():
        state = torch.load(run.file(CHECKPOINT), weights_only=True, map_location="cpu")
        params = defense_params(model)
        with torch.no_grad():
            for name, value in state["defense"].items():
                params[name].copy_(value)
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng_cpu"])
        for k, d in state["compute"].items():
            logs[k].restore(Ledger.from_dict(d))
        start = int(state["step"])
    if run.file(LOSS).exists():
        write_jsonl(run.file(LOSS), [r for r in read_jsonl(run.file(LOSS)) if r["step"] <= start])
    return start


def _retain(handle: Any, cfg: TarConfig, run: Any) -> tuple[list[Any], dict[str, Any]]:
    """Retain pairs from `retain.jsonl`, or generated once (greedy) and written there."""
    from refusalscope.attacks.pairs import Pair
    from refusalscope.data.load import load_split
    from refusalscope.fileio import read_jsonl, write_jsonl

    path = run.file(RETAIN)
    if path.is_file():
        pairs = [Pair(**r) for r in read_jsonl(path)]
    else:
        prompts = load_split("attack-train", harmless=True, n=cfg.n_retain)
        pairs = own_replies(handle, prompts, cfg.retain_new_tokens)
        write_jsonl(path, [{"id": p.id, "prompt": p.prompt, "response": p.response,
                            "source": p.source} for p in pairs])
    from refusalscope.generation import generation_ledger

    tok = handle.tokenizer
    special = not handle.has_chat_template
    rows = [{"prompt_tokens": len(tok(handle.format_prompt(p.prompt),
                                      add_special_tokens=special)["input_ids"]),
             "new_tokens": len(tok(p.response, add_special_tokens=False)["input_ids"])}
            for p in pairs]
    return pairs, generation_ledger(handle, rows).to_dict()


def load_data(cfg: TarConfig) -> tuple[list[Any], list[Any]]:
    """Attack pairs and retain prompts; bad input (too few pairs, no built data) fails here."""
    from refusalscope.attacks.pairs import load_pairs
    from refusalscope.data.load import load_split

    pairs = load_pairs(cfg.n_data, seed=cfg.seed, target_kind=cfg.target_kind,
                       data_file=cfg.data_file)
    retain = load_split("attack-train", harmless=True, n=cfg.n_retain)
    if not retain:
        raise UserError("no harmless attack-train prompts for the retain loss: run "
                        "`refusalscope data build`")
    return pairs, retain


def run_tar(cfg: TarConfig | None = None, *, options: Any = None, resume: str | None = None,
            on_step: StepFn | None = None) -> Any:
    """Train a defended model into a new run (or continue `resume`); returns the finished Run
    (`runner.run_defense` with this module's `TAR`).

    Example:
        run = run_tar(TarConfig(model="qwen2.5-coder-0.5b", outer_steps=8, inner_steps=4))
        # then: refusalscope attack lora --model {run.path}/model ...
    """
    from refusalscope.defenses.runner import run_defense

    def progress(row: dict[str, Any]) -> None:
        if on_step is not None:
            on_step(row["step"], row["steps"], row)

    return run_defense(TAR, cfg, resume=resume, options=options, progress=progress)


class TarDefense:
    """TAR-style tamper-resistant fine-tuning (module doc of `defenses.tar`): kind weights."""

    name = "tar"
    kind = WEIGHTS
    config_cls = TarConfig
    work = "train"  # `study plan`'s measured rate
    resumable = True  # `checkpoint.pt` every `save_every` outer steps
    harmful_content = False
    study_keys = ("outer_steps", "inner_steps", "inner_lr", "outer_lr", "retain_weight", "rank",
                  "inner_rank", "n_data", "n_retain", "retain_new_tokens", "batch_size",
                  "max_len", "target_kind", "data", "seed", "adv_lrs", "adv_ranks", "adv_steps",
                  "adv_modules")
    study_defaults = {"data": None}  # the spec's name for `data_file` (relative to the spec)
    study_inputs: dict[str, tuple[str, ...]] = {}

    def cost(self, cfg: TarConfig, model_info: ParamCounts) -> float:
        """Per outer step: the inner attack's steps (their mean over a sampled adversary's
        `adv_steps`) + 2 (the refusal and retain passes of the outer step), each batch x
        max_len tokens with the loss on half of them. Retain generation is left out."""
        from refusalscope.compute import train_flops

        tokens = cfg.batch_size * cfg.max_len
        inner = sum(cfg.adv_steps) / len(cfg.adv_steps) if cfg.adv_steps else cfg.inner_steps
        return cfg.outer_steps * (inner + 2) * train_flops(model_info, tokens, tokens // 2)

    def resources(self, cfg: TarConfig | None) -> dict[str, float]:
        return {"cpus": 2, "gpus": 1}

    def prepare(self, handle: ModelHandle | None, cfg: TarConfig) -> TarConfig:
        """Too few pairs or no built data fail before the model is loaded; LoRA target modules
        the model lacks, once it is."""
        from refusalscope.attacks.lora import LoraAttackConfig, target_modules_for

        if handle is None:
            load_data(cfg)
        else:
            target_modules_for(handle.model, LoraAttackConfig(model=cfg.model))
        return cfg

    def run(self, handle: ModelHandle, cfg: TarConfig, *, run: Run | None = None,
            progress: Progress | None = None, batch_size: int | None = None) -> DefenseResult:
        """Train into `run` (resuming from its checkpoint) and save the defended model there;
        without `run`, a copy of the model is trained in a temporary folder kept until the
        process ends. With `run`, `handle` ends holding the defended weights."""
        from refusalscope.fileio import read_jsonl

        own = run if run is not None else _temporary_run(cfg)
        work = handle if run is not None else _copy(handle)
        pairs, _ = load_data(cfg)
        t0 = time.perf_counter()
        retain, gen = _retain(work, cfg, own)
        data = TarData(pairs, refusal_pairs(pairs), retain)
        own.manifest.extra.update({
            "defense": self.name, "method": METHOD, "data_ids": data.ids(),
            "model_info": _model_info(work), "device": str(work.device)})
        own.save()

        def on_step(step: int, total: int, row: dict[str, Any]) -> None:
            if progress is not None:
                progress({**row, "steps": total})

        logs = train_tar(work, data, cfg, own, on_step=on_step)
        model_dir = save_defended(work, own, cfg)
        compute = _totals(logs, gen, time.perf_counter() - t0)
        return DefenseResult(self.name, self.kind, cfg.to_dict(),
                             {"model": str(model_dir.resolve()),
                              "adapter": str(own.file("defense_adapter").resolve())},
                             compute, log=read_jsonl(own.file(LOSS)),
                             extra={"method": METHOD, "data_ids": data.ids()})

    def apply(self, handle: ModelHandle, result: DefenseResult) -> ModelHandle:
        """The defended model, loaded from its folder on the handle's device and dtype."""
        from refusalscope.models.handle import ModelHandle, RuntimeOptions

        dtype = str(next(handle.model.parameters()).dtype).removeprefix("torch.")
        return ModelHandle.load(result.artefact["model"],
                                options=RuntimeOptions(device=str(handle.device), dtype=dtype))

    def write(self, run: Run, result: DefenseResult, *, options: Any = None,
              batch_size: int | None = None) -> None:
        """`compute.json`, `loss.png`; the checkpoint goes (the model is the result)."""
        _finish(run, result.compute, Path(result.artefact["model"]))

    def outputs(self, run: Run) -> dict[str, Any]:
        return {"model": str(run.path / MODEL_DIR)}

    def generation(self, outputs: dict[str, Any]) -> dict[str, Any]:
        return {}

    def study_table(self, params: dict[str, Any], where: str) -> dict[str, Any]:
        return params


def _temporary_run(cfg: TarConfig) -> Any:
    """A run in a temporary folder, removed when the process ends (it held only a copy)."""
    from refusalscope.fileio import process_tempdir
    from refusalscope.runs import Manifest, Run

    return Run(process_tempdir("refusalscope-tar-"),
               Manifest(command=COMMAND, config=cfg.to_dict(), model=cfg.model, seed=cfg.seed))


def _copy(handle: ModelHandle) -> ModelHandle:
    """A handle on a copy of the model (training merges the defense into the weights)."""
    import copy

    from refusalscope.models.handle import ModelHandle

    return ModelHandle(copy.deepcopy(handle.model), handle.tokenizer, handle.name,
                       source=handle.source, adapter=handle.adapter)


def _model_info(handle: ModelHandle) -> dict[str, Any]:
    from refusalscope.models.registry import size_fields

    return {"source": handle.source, "n_params": handle.n_params(), **size_fields(handle),
            "n_layers": handle.n_layers, "d_model": handle.d_model}


def save_defended(handle: Any, run: Any, cfg: TarConfig) -> Path:
    """`run/model/`: the merged weights + tokenizer + a stamp (`models.pull` reads `label`)."""
    from refusalscope.fileio import atomic_write_json
    from refusalscope.models.convert import STAMP

    out = run.file(MODEL_DIR)
    handle.model.save_pretrained(out)
    handle.tokenizer.save_pretrained(out)
    base = Path(cfg.model).name if Path(cfg.model).is_dir() else cfg.model
    atomic_write_json(out / STAMP, {"label": f"{base}+tar", "defense": "tar",
                                    "base_model": cfg.model, "run": run.id})
    return out


def _totals(logs: dict[str, dict[str, Any]], gen: dict[str, Any], wall: float) -> dict[str, Any]:
    inner, outer = logs["inner"], logs["outer"]
    return {**combine({"inner": inner, "outer": outer, "retain_generation": gen}),
            "method": METHOD, "outer_steps": outer["steps"], "inner_steps": inner["steps"],
            "steps": outer["steps"], "wall_seconds": round(wall, 3)}


def _finish(run: Any, compute: dict[str, Any], model_dir: Path) -> None:
    from refusalscope.attacks.lora import plot_loss
    from refusalscope.fileio import atomic_write_json

    atomic_write_json(run.file("compute.json"), compute)
    plot_loss(run)
    run.file(CHECKPOINT).unlink(missing_ok=True)  # finished: the model is the result
    run.manifest.extra.update({"compute": compute, "model_path": str(model_dir.resolve())})
    log.info("defend-tar %s: %d outer steps, %.3g FLOPs", run.id, compute["outer_steps"],
             compute["flops_estimate"])



TAR = TarDefense()
