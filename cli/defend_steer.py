"""`refusalscope defend steer`: add the refusal direction back after an attack, alpha tuned on
the `direction` split."""

from __future__ import annotations

import typer

from refusalscope.cli._common import (
    BATCH_HELP,
    DEVICE_HELP,
    DTYPE_HELP,
    default,
    out_option,
    rename_options,
    user_errors,
)
from refusalscope.defenses.steer import SteerDefenseConfig

rename_options("defend steer", {"--alpha": "--coef"})


def register(group: typer.Typer) -> None:
    """Add `steer` to the `defend` group."""
    group.command("steer")(steer)


@user_errors
def steer(
    model: str = typer.Option(..., "--model", "-m", help="The attacked model's base: registry name or folder."),
    adapter: str | None = typer.Option(None, "--adapter", help="The attack: an attack-lora run or a peft adapter folder."),
    directions: str | None = typer.Option(None, "--directions", "-d", help="RUN/directions.h5 from `probe sweep` (of the base model)."),
    coef: str = typer.Option(",".join(f"{a:g}" for a in default(SteerDefenseConfig, "alphas")), "--coef", help="Steering coefficients to search, comma-separated (multiples of the difference-in-means vector)."),
    layers: str | None = typer.Option(None, help="Addition layers (L, L1,L2, L1-L2) [default: the selected layer]."),
    n: int = typer.Option(default(SteerDefenseConfig, "n"), "--n", help="Direction-split harmful and harmless prompts each for the search."),
    skip: int | None = typer.Option(None, "--skip", help="Skip the first k direction-split prompts [default: the sweep's --n + --n-val, read from its manifest; fewer is an error]."),
    max_new_tokens: int = typer.Option(default(SteerDefenseConfig, "max_new_tokens"), "--max-new-tokens", help="Tokens generated per search response at most."),
    rule: str = typer.Option(default(SteerDefenseConfig, "rule"), help="margin (max RRR - over-refusal) | target (smallest coefficient with RRR >= --target)."),
    target: float = typer.Option(default(SteerDefenseConfig, "target"), help="RRR (a fraction in (0, 1]) to reach with --rule target."),
    eval_n: int = typer.Option(default(SteerDefenseConfig, "eval_n"), "--eval-n", help="Then evaluate coefficient 0 and the chosen one on this many eval prompts per side (0: skip)."),
    eval_max_new_tokens: int = typer.Option(default(SteerDefenseConfig, "eval_max_new_tokens"), "--eval-max-new-tokens", help="Tokens generated per eval response at most."),
    scorer: str = typer.Option(default(SteerDefenseConfig, "scorer"), help="heuristic | ensemble"),
    seed: int = typer.Option(default(SteerDefenseConfig, "seed"), "--seed", help="Seed saved with the run (decoding is greedy)."),
    batch_size: int = typer.Option(16, "--batch-size", help=BATCH_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    out: str | None = out_option(),
) -> None:
    """Choose the coefficient for adding the refusal direction to an attacked model, on
    direction-split prompts the direction was not selected on; optionally evaluate it on eval
    (RRR, over-refusal with CIs). Writes search_generations.jsonl, the table and manifest.json
    in a run folder under $REFUSALSCOPE_ARTIFACTS/runs (or --out); prints the choice to stderr
    and the folder to stdout.

    \b
    Example:
      refusalscope defend steer -m smollm2-135m --adapter runs/lora -d runs/sweep/directions.h5
    """
    from refusalscope.defenses.registry import get
    from refusalscope.defenses.runner import run_defense
    from refusalscope.defenses.steer import sweep_prompts_used
    from refusalscope.errors import UserError
    from refusalscope.interp.steering import parse_layers
    from refusalscope.models.handle import RuntimeOptions
    from refusalscope.runs import Run

    try:
        alphas = tuple(float(a) for a in coef.split(",") if a.strip())
    except ValueError:
        raise UserError(f"--coef {coef!r}: comma-separated numbers, e.g. 0,1,2,4") from None
    if skip is None:
        used = sweep_prompts_used(directions) if directions else None
        skip = used[0] if used else 0
    cfg = SteerDefenseConfig(model=model, directions=directions, adapter=adapter, alphas=alphas,
                             layers=None if layers is None else parse_layers(layers, None), n=n,
                             skip=skip, max_new_tokens=max_new_tokens, rule=rule, target=target,
                             eval_n=eval_n, eval_max_new_tokens=eval_max_new_tokens,
                             scorer=scorer, seed=seed)

    def on_alpha(r: dict) -> None:  # type: ignore[type-arg]
        typer.echo(f"  coef {r['alpha']:g}: RRR {r['rrr']:.2f} over-refusal "
                   f"{r['over_refusal']:.2f} (direction split, n={r['n']})", err=True)

    with Run.at(out):
        run = run_defense(get("steer"), cfg, options=RuntimeOptions(device=device, dtype=dtype),
                          batch_size=batch_size, progress=on_alpha)
    ch = run.manifest.extra["chosen"]
    typer.echo(f"chosen coef {ch['alpha']:g} ({ch['why']}); generate --steer {ch['steer']}",
               err=True)
    for a, sides in run.manifest.extra["eval"].items():
        typer.echo(f"  eval coef {a}: " + ", ".join(
            f"{s} refused {v['rate']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]"
            for s, v in sides.items()), err=True)
    typer.echo(str(run.path))
