"""`refusalscope attack lora`: LoRA fine-tuning attack sweeps, one run folder per grid cell."""

from __future__ import annotations

import typer

from refusalscope.cli._common import user_errors

_LIST = "One value or a comma list (a grid axis)."


def register(group: typer.Typer) -> None:
    """Add `lora` to the `attack` group."""
    group.command("lora")(lora)


@user_errors
def lora(
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name, local folder or hub id."),
    n_data: str = typer.Option("16,64", "--n-data", help="Training pairs per run. " + _LIST),
    steps: str = typer.Option("1,2,4,8,16,32", "--steps", help="Optimizer steps per run. " + _LIST),
    lr: str = typer.Option("2e-4", "--lr", help="Learning rate (constant, AdamW). " + _LIST),
    rank: str = typer.Option("8", "--rank", help="LoRA rank. " + _LIST),
    alpha: str = typer.Option("16", "--alpha", help="LoRA alpha. " + _LIST),
    seeds: str = typer.Option("0", "--seeds", "--seed", help="Seeds (data order, adapter init). " + _LIST),
    dropout: float = typer.Option(0.0, "--dropout", help="LoRA dropout."),
    target_modules: str | None = typer.Option(None, "--target-modules", help="Comma list of module names (default: attention q,k,v,o projections)."),
    batch_size: int = typer.Option(4, "--batch-size"),
    max_len: int = typer.Option(256, "--max-len", help="Max tokens per example (prompt + response)."),
    target_kind: str = typer.Option("auto", "--target-kind", help="auto (full responses, then AdvBench targets) | full-response | advbench-target"),
    data: str | None = typer.Option(None, "--data", help="A CSV/JSONL/parquet file of prompt, response pairs (full compliant responses)."),
    pairs: str | None = typer.Option(None, "--pairs", help="Pairs made by `refusalscope data pairs`: its --name, content id, folder or generations.jsonl (kept pairs only)."),
    grad_checkpointing: bool = typer.Option(False, "--grad-checkpointing", help="Recompute activations in backward (less memory, ~1/3 more compute). On CUDA it is turned on by itself when the memory estimate (printed) says the batch does not fit without it."),
    save_every: int = typer.Option(8, "--save-every", help="Checkpoint every k steps for --resume (0: never)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    dtype: str = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16"),
    resume: str | None = typer.Option(None, help="Continue an interrupted attack-lora run (folder or id)."),
) -> None:
    """Fine-tune LoRA adapters on harmful prompt -> compliant response pairs (attack-train split).

    Prints one run folder per cell; evaluate one with `generate --adapter RUN` then `score`.
    A cell whose finished run exists is skipped; an unfinished one continues from its checkpoint.
    """
    from refusalscope.attacks.grid import expand_grid, parse_values, resume as resume_run, run_grid
    from refusalscope.errors import UserError
    from refusalscope.models.handle import RuntimeOptions

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
            "alpha": parse_values(alpha, float, "--alpha"),
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

    for res in run_grid(cfgs, options=opts, on_cell=on_cell, on_step=on_step,
                        on_memory=on_memory):
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
