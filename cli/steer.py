"""`refusalscope steer orthogonalize|eval`: bake an ablation into weights; measure steering."""

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
from refusalscope.interp.steer_eval import SteerEvalConfig

rename_options("steer eval", {"--alpha": "--coef"})

steer_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="Refusal-direction steering: orthogonalised weights, evaluation. "
                             "`generate --steer SPEC` applies one intervention while generating; "
                             "SPEC is ablate:DIRS.h5 (project the selected direction out at "
                             "every layer and position) or add:DIRS.h5[:alpha=A][:layers=L|L1,L2|"
                             "L1-L2|all] (add A x the difference-in-means vector; default A=1 at "
                             "the selected layer).\n\n\b\nExample:\n"
                             "  refusalscope steer eval -m smollm2-135m "
                             "-d runs/sweep/directions.h5 --n 8")


def register(app: typer.Typer) -> None:
    app.add_typer(steer_app, name="steer")


@steer_app.command("orthogonalize")
@user_errors
def orthogonalize(
    model: str = typer.Option(..., "--model", "-m", help="Registry name, local folder or hub id."),
    directions: str = typer.Option(..., "--directions", "-d", help="directions.h5 from `probe sweep`."),
    out: str = typer.Option(..., "--out", metavar="DIR", help="New model folder (must not exist or be empty)."),
    device: str = typer.Option("cpu", help=DEVICE_HELP + " (The weights are saved in float32.)"),
) -> None:
    """Project the selected direction out of embedding, attention-out and MLP-out weights; save
    a model folder (weights, tokenizer, orthogonalize.json) at --out, usable as
    `--model FOLDER`, and print its path.

    \b
    Example:
      refusalscope steer orthogonalize -m smollm2-135m -d runs/sweep/directions.h5 --out ortho
    """
    from pathlib import Path

    from refusalscope.errors import UserError
    from refusalscope.fileio import sha256_file
    from refusalscope.interp.directions import load_directions
    from refusalscope.interp.steering import orthogonalize as ortho
    from refusalscope.interp.steering import save_orthogonalized
    from refusalscope.models.handle import ModelHandle, RuntimeOptions

    p = Path(out)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise UserError(f"--out {out} exists and is not empty; not overwriting")
    handle = ModelHandle.load(model, options=RuntimeOptions(device=device, dtype="float32"))
    d = load_directions(directions, handle)
    import torch

    ortho(handle, torch.from_numpy(d.selected_direction()))
    info = {"source_model": model, "directions": str(Path(directions).resolve()),
            "directions_sha256": sha256_file(Path(directions)), "selected": list(d.selected or ()),
            "operation": "orthogonalize"}
    typer.echo(str(save_orthogonalized(handle, p, info)))


@steer_app.command("eval")
@user_errors
def evaluate(
    model: str = typer.Option(..., "--model", "-m", help="Registry name, local folder or hub id."),
    directions: str = typer.Option(..., "--directions", "-d", help="directions.h5 from `probe sweep`."),
    coef: str = typer.Option(",".join(f"{a:g}" for a in default(SteerEvalConfig, "alphas")), "--coef", help="Steering coefficients, comma-separated (multiples of the difference-in-means vector)."),
    layers: str | None = typer.Option(None, help="Addition layers (L, L1,L2, L1-L2) [default: the selected layer]."),
    n: int = typer.Option(default(SteerEvalConfig, "n"), "--n", help="Harmful and harmless prompts each."),
    split: str = typer.Option(default(SteerEvalConfig, "split"), help="Built prompt split: attack-train | direction | eval."),
    max_new_tokens: int = typer.Option(default(SteerEvalConfig, "max_new_tokens"), "--max-new-tokens", help="Tokens generated per response at most."),
    scorer: str = typer.Option(default(SteerEvalConfig, "scorer"), help="heuristic | ensemble"),
    harmful: bool = typer.Option(default(SteerEvalConfig, "harmful"), "--harmful/--no-harmful", help="Also generate harmful prompts without and with ablation."),
    batch_size: int = typer.Option(16, "--batch-size", help=BATCH_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    out: str | None = out_option(),
) -> None:
    """Refusal rate of harmful prompts under ablation, and of harmless prompts vs coefficient.
    Writes the generations, a table and manifest.json in a run folder under
    $REFUSALSCOPE_ARTIFACTS/runs (or --out); prints each condition to stderr and the folder to
    stdout.

    \b
    Example:
      refusalscope steer eval -m smollm2-135m -d runs/sweep/directions.h5 --coef 0,1,2 --n 8
    """
    from refusalscope.errors import UserError
    from refusalscope.interp.steer_eval import run_steer_eval
    from refusalscope.interp.steering import parse_layers
    from refusalscope.models.handle import RuntimeOptions
    from refusalscope.runs import Run

    try:
        alphas = tuple(float(a) for a in coef.split(",") if a.strip())
    except ValueError:
        raise UserError(f"--coef {coef!r}: comma-separated numbers, e.g. 0,1,2,4") from None
    cfg = SteerEvalConfig(model=model, directions=directions, alphas=alphas,
                          layers=None if layers is None else parse_layers(layers, None), n=n,
                          split=split, max_new_tokens=max_new_tokens, scorer=scorer,
                          harmful=harmful)

    def on_condition(i: int, total: int, r: dict) -> None:  # type: ignore[type-arg]
        typer.echo(f"[{i}/{total}] {r['condition']}: refused {r['refused']}/{r['n']} "
                   f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}] ({r['refused_coherent']} coherent), "
                   f"degenerate {r['degenerate']}",
                   err=True)

    with Run.at(out):
        run = run_steer_eval(cfg, options=RuntimeOptions(device=device, dtype=dtype),
                             batch_size=batch_size, on_condition=on_condition)
    typer.echo(str(run.path))
