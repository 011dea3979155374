"""`refusalscope defend tar`: tamper-resistant fine-tuning (TAR-style, first-order)."""

from __future__ import annotations

import typer

from refusalscope.cli._common import user_errors


def register(group: typer.Typer) -> None:
    """Add `tar` to the `defend` group."""
    group.command("tar")(tar)


@user_errors
def tar(
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name, local folder or hub id."),
    outer_steps: int = typer.Option(16, "--outer-steps", help="Defense (outer) steps."),
    inner_steps: int = typer.Option(4, "--inner-steps", help="Simulated LoRA-attack steps per outer step."),
    inner_lr: float = typer.Option(2e-4, "--inner-lr", help="Simulated attack's learning rate (AdamW)."),
    outer_lr: float = typer.Option(1e-4, "--outer-lr", help="Defense adapter's learning rate (AdamW)."),
    retain_weight: float = typer.Option(1.0, "--retain-weight", help="Weight of the retain loss (harmless prompts, own replies)."),
    rank: int = typer.Option(8, "--rank", help="Defense LoRA rank (merged into the weights at the end)."),
    inner_rank: int = typer.Option(8, "--inner-rank", help="Simulated attack's LoRA rank."),
    n_data: int = typer.Option(16, "--n-data", help="Attack pairs (inner loop) = harmful prompts with refusal targets (outer)."),
    n_retain: int = typer.Option(16, "--n-retain", help="Harmless attack-train prompts for the retain loss."),
    retain_new_tokens: int = typer.Option(48, "--retain-new-tokens", help="Length of the base model's own replies used as retain targets."),
    batch_size: int = typer.Option(4, "--batch-size"),
    max_len: int = typer.Option(128, "--max-len", help="Max tokens per example (prompt + response)."),
    target_kind: str = typer.Option("auto", "--target-kind", help="auto | full-response | advbench-target (as attack lora)"),
    data: str | None = typer.Option(None, "--data", help="A CSV/JSONL/parquet file of prompt, response attack pairs."),
    seed: int = typer.Option(0, "--seed", help="Data order, adapter inits, batches."),
    save_every: int = typer.Option(4, "--save-every", help="Checkpoint every k outer steps for --resume (0: never)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    dtype: str = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16"),
    resume: str | None = typer.Option(None, help="Continue an interrupted defend-tar run (folder or id)."),
) -> None:
    """Train a LoRA defense that keeps refusing after simulated LoRA attacks (first-order TAR).

    Each outer step trains a fresh attack adapter for --inner-steps on attack-train pairs (the
    defense frozen), then steps the defense on refusal after that attack plus a retain loss.
    Prints the run folder; its defended model is `--model RUN` (or RUN/model) for every command.
    """
    from refusalscope.defenses.tar import TarConfig
    from refusalscope.defenses.tar_run import run_tar
    from refusalscope.errors import UserError
    from refusalscope.models.handle import RuntimeOptions

    opts = RuntimeOptions(device=device, dtype=dtype)
    if resume is None and model is None:
        raise UserError("--model is required (a name from `refusalscope models list` or a folder)")
    cfg = TarConfig(model=model or "", n_data=n_data, outer_steps=outer_steps,
                    inner_steps=inner_steps, inner_lr=inner_lr, outer_lr=outer_lr,
                    retain_weight=retain_weight, n_retain=n_retain,
                    retain_new_tokens=retain_new_tokens, rank=rank, inner_rank=inner_rank,
                    batch_size=batch_size, max_len=max_len, target_kind=target_kind,
                    data_file=data, save_every=save_every, seed=seed)

    def on_step(step: int, total: int, row: dict) -> None:  # type: ignore[type-arg]
        if step == total or step & (step - 1) == 0 or step % 10 == 0:
            typer.echo(f"  outer {step}/{total} refusal-after-attack "
                       f"{row['refusal_after_attack']:.4f} retain {row.get('retain', 0):.4f} "
                       f"attack loss {row['inner_first']:.3f}->{row['inner_last']:.3f}", err=True)

    run = run_tar(cfg, options=opts, resume=resume, on_step=on_step)
    c = run.manifest.extra["compute"]
    typer.echo(f"defended model: {run.path / 'model'} ({c['outer_steps']} outer x "
               f"{cfg.inner_steps} inner steps, {c['flops_estimate']:.3g} FLOPs)", err=True)
    typer.echo(str(run.path))
