"""`refusalscope defend tar`: tamper-resistant fine-tuning (TAR-style, first-order)."""

from __future__ import annotations

import typer

from refusalscope.cli._common import DEVICE_HELP, DTYPE_HELP, default, out_option, user_errors
from refusalscope.defenses.tar import TarConfig


def _s(values: tuple[object, ...]) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _values(text: str, cast: type, option: str) -> tuple[object, ...]:
    """A comma list option as a tuple (empty text: the empty tuple, the config's default)."""
    from refusalscope.attacks.grid import parse_values

    return tuple(parse_values(text, cast, option)) if text.strip() else ()


def register(group: typer.Typer) -> None:
    """Add `tar` to the `defend` group."""
    group.command("tar")(tar)


@user_errors
def tar(
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name, local folder or hub id."),
    outer_steps: int = typer.Option(default(TarConfig, "outer_steps"), "--outer-steps", help="Defense (outer) steps."),
    inner_steps: int = typer.Option(default(TarConfig, "inner_steps"), "--inner-steps", help="Simulated LoRA-attack steps per outer step."),
    inner_lr: float = typer.Option(default(TarConfig, "inner_lr"), "--inner-lr", help="Simulated attack's learning rate (AdamW)."),
    outer_lr: float = typer.Option(default(TarConfig, "outer_lr"), "--outer-lr", help="Defense adapter's learning rate (AdamW)."),
    retain_weight: float = typer.Option(default(TarConfig, "retain_weight"), "--retain-weight", help="Weight of the retain loss (harmless prompts, own replies)."),
    rank: int = typer.Option(default(TarConfig, "rank"), "--rank", help="Defense LoRA rank (merged into the weights at the end)."),
    lora_alpha: float = typer.Option(default(TarConfig, "alpha"), "--lora-alpha", help="Defense LoRA alpha (the adapter's scale is alpha / rank)."),
    inner_rank: int = typer.Option(default(TarConfig, "inner_rank"), "--inner-rank", help="Simulated attack's LoRA rank."),
    inner_lora_alpha: float = typer.Option(default(TarConfig, "inner_alpha"), "--inner-lora-alpha", help="Simulated attack's LoRA alpha (a drawn rank scales it: alpha x rank / --inner-rank)."),
    adv_lrs: str = typer.Option(_s(default(TarConfig, "adv_lrs")), "--adv-lrs", metavar="LR[,LR...]", help="Adversary distribution: learning rates each outer step draws one of [default: --inner-lr only]."),
    adv_ranks: str = typer.Option(_s(default(TarConfig, "adv_ranks")), "--adv-ranks", metavar="R[,R...]", help="Adversary distribution: LoRA ranks to draw from [default: --inner-rank only]."),
    adv_steps: str = typer.Option(_s(default(TarConfig, "adv_steps")), "--adv-steps", metavar="K[,K...]", help="Adversary distribution: inner step counts to draw from [default: --inner-steps only]."),
    adv_modules: str = typer.Option(_s(default(TarConfig, "adv_modules")), "--adv-modules", metavar="SET[,SET...]", help="Adversary distribution: LoRA module sets to draw from, each attn | mlp | all [default: attn only]."),
    n_data: int = typer.Option(default(TarConfig, "n_data"), "--n-data", help="Attack pairs (inner loop) = harmful prompts with refusal targets (outer)."),
    n_retain: int = typer.Option(default(TarConfig, "n_retain"), "--n-retain", help="Harmless attack-train prompts for the retain loss."),
    retain_new_tokens: int = typer.Option(default(TarConfig, "retain_new_tokens"), "--retain-new-tokens", help="Length of the base model's own replies used as retain targets."),
    batch_size: int = typer.Option(default(TarConfig, "batch_size"), "--batch-size", help="Examples per training step (inner and outer)."),
    max_len: int = typer.Option(default(TarConfig, "max_len"), "--max-len", help="Max tokens per example (prompt + response); longer ones are cut."),
    target_kind: str = typer.Option(default(TarConfig, "target_kind"), "--target-kind", help="auto | full-response | advbench-target (as attack lora)"),
    data: str | None = typer.Option(None, "--data", help="A CSV/JSONL/parquet file of prompt, response attack pairs."),
    seed: int = typer.Option(default(TarConfig, "seed"), "--seed", help="Data order, adapter inits, batches."),
    save_every: int = typer.Option(default(TarConfig, "save_every"), "--save-every", help="Checkpoint every k outer steps for --resume (0: never)."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    resume: str | None = typer.Option(None, help="Continue an interrupted defend-tar run (folder or id)."),
    out: str | None = out_option(),
) -> None:
    """Train a LoRA defense that keeps refusing after simulated LoRA attacks (first-order TAR).

    Each outer step trains a fresh attack adapter for --inner-steps on attack-train pairs (the
    defense frozen), then steps the defense on refusal after that attack plus a retain loss.
    With --adv-lrs/--adv-ranks/--adv-steps/--adv-modules each outer step draws its simulated
    attack from that distribution instead (as TAR samples its adversaries).
    Writes model/ (the merged, defended weights), loss.jsonl and manifest.json in a run folder
    under $REFUSALSCOPE_ARTIFACTS/runs (or --out) and prints it; the defended model is
    `--model RUN` (or RUN/model) for every command.

    \b
    Example:
      refusalscope defend tar -m smollm2-135m --outer-steps 4 --inner-steps 2 --out runs/tar
    """
    from refusalscope.defenses.registry import get
    from refusalscope.defenses.runner import run_defense
    from refusalscope.errors import UserError
    from refusalscope.models.handle import RuntimeOptions
    from refusalscope.runs import Run

    opts = RuntimeOptions(device=device, dtype=dtype)
    if resume is None and model is None:
        raise UserError("--model is required (a name from `refusalscope models list` or a folder)")
    cfg = None if resume is not None else TarConfig(
        model=model or "", n_data=n_data, outer_steps=outer_steps, inner_steps=inner_steps,
        inner_lr=inner_lr, outer_lr=outer_lr, retain_weight=retain_weight, n_retain=n_retain,
        retain_new_tokens=retain_new_tokens, rank=rank, alpha=lora_alpha,
        inner_rank=inner_rank, inner_alpha=inner_lora_alpha, batch_size=batch_size,
        max_len=max_len, target_kind=target_kind, data_file=data, save_every=save_every,
        seed=seed, adv_lrs=_values(adv_lrs, float, "--adv-lrs"),
        adv_ranks=_values(adv_ranks, int, "--adv-ranks"),
        adv_steps=_values(adv_steps, int, "--adv-steps"),
        adv_modules=_values(adv_modules, str, "--adv-modules"))

    def on_step(row: dict) -> None:  # type: ignore[type-arg]
        step, total = row["step"], row["steps"]
        if step == total or step & (step - 1) == 0 or step % 10 == 0:
            typer.echo(f"  outer {step}/{total} refusal-after-attack "
                       f"{row['refusal_after_attack']:.4f} retain {row.get('retain', 0):.4f} "
                       f"attack loss {row['inner_first']:.3f}->{row['inner_last']:.3f}", err=True)

    if resume is not None and out is not None:
        raise UserError("--resume continues its own run folder; drop --out")
    with Run.at(out):
        run = run_defense(get("tar"), cfg, options=opts, resume=resume, progress=on_step)
    c = run.manifest.extra["compute"]
    typer.echo(f"defended model: {run.path / 'model'} ({c['outer_steps']} outer steps, "
               f"{c['inner_steps']} inner steps in all, {c['flops_estimate']:.3g} FLOPs)",
               err=True)
    typer.echo(str(run.path))
