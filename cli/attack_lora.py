"""`refusalscope attack lora`: LoRA fine-tuning attack sweeps, one run folder per grid cell."""

from __future__ import annotations

import typer

from refusalscope.attacks.base import config_defaults
from refusalscope.attacks.grid import DEFAULT_N_DATA, DEFAULT_STEPS
from refusalscope.attacks.lora import LoraAttackConfig
from refusalscope.cli._common import rename_options, user_errors

_LIST = "One value or a comma list (a grid axis)."
L = config_defaults(LoraAttackConfig)


def _s(value: float) -> str:
    """A config default as the CLI's comma-list text: 2e-4 -> '0.0002', 16.0 -> '16'."""
    return f"{value:g}" if isinstance(value, float) else str(value)


rename_options("attack lora", {"--alpha": "--lora-alpha"})


def register(group: typer.Typer) -> None:
    """Add `lora` to the `attack` group."""
    group.command("lora")(lora)


@user_errors
def lora(
    model: str | None = typer.Option(None, "--model", "-m", metavar="MODEL", help="Registry name, local folder or hub id."),
    n_data: str = typer.Option(DEFAULT_N_DATA, "--n-data", metavar="N[,N...]", help="Training pairs per run. " + _LIST),
    steps: str = typer.Option(DEFAULT_STEPS, "--steps", metavar="N[,N...]", help="Optimizer steps per run. " + _LIST),
    lr: str = typer.Option(_s(L["lr"]), "--lr", metavar="LR[,LR...]", help="Learning rate (constant, AdamW). " + _LIST),
    rank: str = typer.Option(_s(L["rank"]), "--rank", metavar="R[,R...]", help="LoRA rank. " + _LIST),
    lora_alpha: str = typer.Option(_s(L["alpha"]), "--lora-alpha", metavar="A[,A...]", help="LoRA alpha (the adapter's scale is alpha / rank). " + _LIST),
    seeds: str = typer.Option(_s(L["seed"]), "--seeds", metavar="N[,N...]", help="Seeds (data order, adapter init). " + _LIST),
    seed_old: str | None = typer.Option(None, "--seed", metavar="N", help="One seed (same as --seeds N)."),
    dropout: float = typer.Option(L["dropout"], "--dropout", metavar="P", help="LoRA dropout."),
    target_modules: str | None = typer.Option(None, "--target-modules", metavar="NAMES", help="Comma list of module names (default: attention q,k,v,o projections)."),
    batch_size: int = typer.Option(L["batch_size"], "--batch-size", metavar="N", help="Training pairs per optimizer step."),
    max_len: int = typer.Option(L["max_len"], "--max-len", metavar="TOKENS", help="Max tokens per example (prompt + response)."),
    target_kind: str = typer.Option(L["target_kind"], "--target-kind", metavar="KIND", help="auto (full responses, then AdvBench targets) | full-response | advbench-target"),
    data: str | None = typer.Option(None, "--data", metavar="FILE", help="A CSV/JSONL/parquet file of prompt, response pairs (full compliant responses)."),
    pairs: str | None = typer.Option(None, "--pairs", metavar="PAIRS", help="Pairs made by `refusalscope data pairs`: its --name, content id, folder or generations.jsonl (kept pairs only)."),
    grad_checkpointing: bool = typer.Option(L["grad_checkpointing"], "--grad-checkpointing", help="Recompute activations in backward (less memory, ~1/3 more compute). On CUDA it is turned on by itself when the memory estimate (printed) says the batch does not fit without it."),
    save_every: int = typer.Option(L["save_every"], "--save-every", metavar="STEPS", help="Checkpoint every k steps for --resume (0: never)."),
    device: str = typer.Option("auto", metavar="DEVICE", help="auto | cpu | cuda | cuda:N"),
    dtype: str = typer.Option("auto", metavar="DTYPE", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16"),
    resume: str | None = typer.Option(None, metavar="RUN", help="Continue an interrupted attack-lora run (folder or id)."),
    out: str | None = typer.Option(None, "--out", metavar="DIR", help="Folder for the cells' run folders (made if missing) instead of $REFUSALSCOPE_ARTIFACTS/runs; finished cells already in it are skipped."),
) -> None:
    """Fine-tune LoRA adapters on harmful prompt -> compliant response pairs (attack-train split).

    Writes one run folder per grid cell under $REFUSALSCOPE_ARTIFACTS/runs (adapter/,
    loss.jsonl, loss.png, compute.json) and prints each; evaluate one with
    `generate --adapter RUN` then `score`. A cell whose finished run exists is skipped; an
    unfinished one continues from its checkpoint. Single values default to
    `LoraAttackConfig`'s; --n-data and --steps default to a sweep.

    With --out DIR the cells' run folders go in DIR instead (a sweep writes one run per cell,
    found again there by its config id: rerunning the same command resumes).

    \b
    Example:
      refusalscope attack lora -m smollm2-135m --n-data 16 --steps 1,4,16 --lr 1e-3
    """
    from refusalscope.attacks.grid import expand_grid, parse_values, resume as resume_run, run_grid
    from refusalscope.errors import UserError
    from refusalscope.models.handle import RuntimeOptions

    if seed_old is not None:  # --seed is one int (the CLI vocabulary); a list is --seeds
        if "," in seed_old:
            typer.echo("note: `refusalscope attack lora --seed` takes one seed; give a list "
                       "with --seeds", err=True)
        seeds = seed_old
    opts = RuntimeOptions(device=device, dtype=dtype)
    on_step = _step_printer()
    if resume is not None:
        res = resume_run(resume, options=opts, on_step=on_step)
        typer.echo(res.run_path)
        return
    if model is None:
        raise UserError("--model is required (a name from `refusalscope models list` or a folder)")
    if pairs is not None:
        if data is not None:
            raise UserError("give --pairs or --data, not both")
        from refusalscope.data.pairgen import resolve_pairs

        data = str(resolve_pairs(pairs).resolve())
    grid = {"n_data": parse_values(n_data, int, "--n-data"),
            "steps": parse_values(steps, int, "--steps"),
            "lr": parse_values(lr, float, "--lr"), "rank": parse_values(rank, int, "--rank"),
            "alpha": parse_values(lora_alpha, float, "--lora-alpha"),
            "seed": parse_values(seeds, int, "--seeds")}
    modules = tuple(m.strip() for m in target_modules.split(",")) if target_modules else None
    cfgs = expand_grid(model, grid, dropout=dropout, target_modules=modules,
                       batch_size=batch_size, max_len=max_len, target_kind=target_kind,
                       data_file=data, grad_checkpointing=grad_checkpointing,
                       save_every=save_every)

    def on_cell(i: int, total: int, c) -> None:  # type: ignore[no-untyped-def]
        typer.echo(f"[{i}/{total}] n_data={c.n_data} steps={c.steps} lr={c.lr:g} rank={c.rank} "
                   f"alpha={c.alpha:g} seed={c.seed}", err=True)

    def on_memory(plan) -> None:  # type: ignore[no-untyped-def]
        typer.echo(f"  {plan.summary()}", err=True)

    from pathlib import Path

    root = Path(out).expanduser() if out else None
    if root is not None and root.exists() and not root.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    for res in run_grid(cfgs, options=opts, on_cell=on_cell, on_step=on_step,
                        on_memory=on_memory, root=root):
        c = res.config
        flops = res.compute.get("flops_estimate", 0)
        tag = "skipped (finished)" if res.skipped else "done"
        typer.echo(f"{res.run_path}\tn_data={c.n_data}\tsteps={c.steps}\tseed={c.seed}\t"
                   f"flops={flops:.3g}\t{tag}")


def _step_printer():  # type: ignore[no-untyped-def]
    """Print the loss every few steps (and the last) to stderr."""

    def on_step(step: int, total: int, loss: float) -> None:
        if step == total or step & (step - 1) == 0 or step % 10 == 0:
            typer.echo(f"  step {step}/{total} loss {loss:.4f}", err=True)

    return on_step
