"""`refusalscope defend steer`: add the refusal direction back after an attack, alpha tuned on
the `direction` split."""

from __future__ import annotations

import typer

from refusalscope.cli._common import user_errors


def register(group: typer.Typer) -> None:
    """Add `steer` to the `defend` group."""
    group.command("steer")(steer)


@user_errors
def steer(
    model: str = typer.Option(..., "--model", "-m", help="The attacked model's base: registry name or folder."),
    adapter: str | None = typer.Option(None, "--adapter", help="The attack: an attack-lora run or a peft adapter folder."),
    directions: str | None = typer.Option(None, "--directions", "-d", help="directions.h5 from `probe sweep` (of the base model)."),
    alpha: str = typer.Option("0,0.25,0.5,1,2,4", "--alpha", help="Addition coefficients to search (x difference-in-means)."),
    layers: str | None = typer.Option(None, help="Addition layers (L, L1,L2, L1-L2) [default: the selected layer]."),
    n: int = typer.Option(16, "--n", help="Direction-split harmful and harmless prompts each for the search."),
    skip: int = typer.Option(0, "--skip", help="Skip the first k direction-split prompts (e.g. those the direction came from)."),
    max_new_tokens: int = typer.Option(48, "--max-new-tokens"),
    rule: str = typer.Option("margin", help="margin (max RRR - over-refusal) | target (smallest alpha with RRR >= --target)"),
    target: float = typer.Option(0.9, help="RRR to reach with --rule target."),
    eval_n: int = typer.Option(0, "--eval-n", help="Then evaluate alpha 0 and the chosen alpha on this many eval prompts per side (0: skip)."),
    eval_max_new_tokens: int = typer.Option(64, "--eval-max-new-tokens"),
    scorer: str = typer.Option("heuristic", help="heuristic | ensemble"),
    seed: int = typer.Option(0, "--seed"),
    batch_size: int = typer.Option(16, "--batch-size"),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("auto"),
) -> None:
    """Choose the alpha for adding the refusal direction to an attacked model, on direction-split
    prompts only; optionally evaluate it on eval (RRR, over-refusal with CIs). Prints the run."""
    from refusalscope.defenses.steer import SteerDefenseConfig, run_defend_steer
    from refusalscope.errors import UserError
    from refusalscope.interp.steering import parse_layers
    from refusalscope.models.handle import RuntimeOptions

    try:
        alphas = tuple(float(a) for a in alpha.split(",") if a.strip())
    except ValueError:
        raise UserError(f"--alpha {alpha!r}: comma-separated numbers, e.g. 0,1,2,4") from None
    cfg = SteerDefenseConfig(model=model, directions=directions, adapter=adapter, alphas=alphas,
                             layers=None if layers is None else parse_layers(layers, None), n=n,
                             skip=skip, max_new_tokens=max_new_tokens, rule=rule, target=target,
                             eval_n=eval_n, eval_max_new_tokens=eval_max_new_tokens,
                             scorer=scorer, seed=seed)

    def on_alpha(r: dict) -> None:  # type: ignore[type-arg]
        typer.echo(f"  alpha {r['alpha']:g}: RRR {r['rrr']:.2f} over-refusal "
                   f"{r['over_refusal']:.2f} (direction split, n={r['n']})", err=True)

    run = run_defend_steer(cfg, options=RuntimeOptions(device=device, dtype=dtype),
                           batch_size=batch_size, on_alpha=on_alpha)
    ch = run.manifest.extra["chosen"]
    typer.echo(f"chosen alpha {ch['alpha']:g} ({ch['why']}); generate --steer {ch['steer']}",
               err=True)
    for a, sides in run.manifest.extra["eval"].items():
        typer.echo(f"  eval alpha {a}: " + ", ".join(
            f"{s} refused {v['rate']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]"
            for s, v in sides.items()), err=True)
    typer.echo(str(run.path))
