"""`refusalscope data pairs`: harmful -> compliant training pairs made by a generator model."""

from __future__ import annotations

import typer

from refusalscope.cli._common import (
    BATCH_HELP,
    DEVICE_HELP,
    DTYPE_HELP,
    default,
    rename_options,
    user_errors,
)
from refusalscope.data.pairgen import PairsConfig

rename_options("data pairs", {"--generator": "--model"})


def register(group: typer.Typer) -> None:
    """Add `pairs` to the `data` group."""
    group.command("pairs")(pairs)


@user_errors
def pairs(
    n: int = typer.Option(500, "--n", help="Stop once this many pairs are kept."),
    generator: str = typer.Option(default(PairsConfig, "generator"), "--model", "-m",
                                  help="Model that answers (registry name, folder or hub id)."),
    steer: str | None = typer.Option(None, "--steer", help="ablate:DIRS.h5 (from `probe sweep`) or add:DIRS.h5[:alpha=A][:layers=L]; its sha256 is recorded. Default: none (a model that refuses needs one)."),
    samples: int = typer.Option(4, "--samples", help="Sampled answers per prompt at most."),
    temperature: float = typer.Option(default(PairsConfig, "temperature"), "--temperature", help="Sampling temperature (> 0)."),
    top_p: float = typer.Option(default(PairsConfig, "top_p"), "--top-p", help="Nucleus sampling mass in (0, 1]; 1 = off."),
    max_new_tokens: int = typer.Option(default(PairsConfig, "max_new_tokens"), "--max-new-tokens", help="Tokens generated per answer at most."),
    seed: int = typer.Option(default(PairsConfig, "seed"), "--seed", help="Sampling seed."),
    system_prompt: str | None = typer.Option(default(PairsConfig, "system_prompt"), "--system-prompt", help="System message put before every prompt [default: none]."),
    scorer: str = typer.Option(default(PairsConfig, "scorer"), "--scorer", help="ensemble (the study's) | heuristic"),
    name: str | None = typer.Option(None, "--name", help="Name for `attack lora --pairs NAME` (default: the generator's name, +ablate/+add when steered)."),
    batch_size: int = typer.Option(16, "--batch-size", help=BATCH_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
) -> None:
    """Answer attack-train prompts with a generator, keep only answers scored `complied`.

    Resumable: a rerun with the same generator, steer and sampling settings continues the
    same cached folder (larger --n or --samples extend it). Prints a summary and the folder;
    writes generations.jsonl, report.json and manifest.json in the pairs cache
    ($REFUSALSCOPE_HOME/data/pairs/ID), where `attack lora --pairs NAME` finds them.

    \b
    Example:
      refusalscope data pairs -m qwen2.5-coder-0.5b --n 50 --samples 2
    """
    import time

    from refusalscope.data.pairgen import make_pairs
    from refusalscope.interp.steering import SteerSpec, pin_spec
    from refusalscope.models.handle import RuntimeOptions
    from refusalscope.runs import model_slug

    cfg = PairsConfig(generator=generator, steer=pin_spec(steer), temperature=temperature,
                      top_p=top_p, max_new_tokens=max_new_tokens, seed=seed,
                      system_prompt=system_prompt, scorer=scorer)
    if name is None:
        name = model_slug(generator) + (f"+{SteerSpec.parse(steer).mode}" if steer else "")
        name = name.replace("+", "-")
    t0 = time.monotonic()
    last = [t0]

    def progress(generated: int, kept: int, wanted: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 30 or kept >= wanted:
            last[0] = now
            typer.echo(f"  {generated} generated, {kept}/{wanted} kept "
                       f"({now - t0:.0f} s)", err=True)

    rep = make_pairs(cfg, n, samples=samples, batch_size=batch_size, name=name,
                     options=RuntimeOptions(device=device, dtype=dtype), on_progress=progress)
    drops = ", ".join(f"{r} {k}" for r, k in rep.dropped.items()) or "none"
    typer.echo(f"pairs {name!r}: {rep.kept} kept of {rep.generated} generated "
               f"(keep rate {rep.keep_rate:.1%}); dropped: {drops}")
    typer.echo(f"{rep.unique_prompts} unique prompts behind the {rep.kept} pairs "
               f"({rep.prompts_available} attack-train prompts usable, "
               f"{rep.held_out_dropped} left out as near-duplicates of eval/direction)")
    typer.echo(f"this call: {rep.generated_this_call} generated in {rep.wall_seconds:.0f} s")
    if rep.exhausted:
        typer.echo(f"warning: every prompt has {rep.samples} samples and only {rep.kept} are "
                   f"kept; pass a larger --samples for more", err=True)
    typer.echo(rep.path)
