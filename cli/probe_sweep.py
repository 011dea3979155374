"""`refusalscope probe sweep` (also `probe --layer-sweep`): refusal directions for every layer x
position, Arditi-style selection, and a table + figure, in a run folder."""

from __future__ import annotations

import typer

from refusalscope.cli._common import BATCH_HELP, DEVICE_HELP, DTYPE_HELP, out_option, user_errors


def register(group: typer.Typer) -> None:
    """Add `sweep` to the `probe` group."""
    group.command("sweep")(sweep_command)


@user_errors
def sweep_command(
    model: str = typer.Option(..., "--model", "-m", help="Registry name, local folder or hub id."),
    adapter: str | None = typer.Option(None, help="peft adapter folder, or a run folder holding one."),
    # Literal defaults (numpy-free start-up); tests/test_cli_vocabulary.py checks SweepConfig's.
    n: int = typer.Option(64, "--n", help="Harmful and harmless direction-split prompts each for the means (the first n)."),
    n_val: int = typer.Option(32, "--n-val", help="Harmful and harmless validation prompts each (the next n-val); `defend steer` must skip these n + n-val."),
    positions: str = typer.Option("post-instruction", help="Token positions: post-instruction | last | mean."),
    split: str = typer.Option("direction", help="Prompt split (only `direction`: eval stays held out)."),
    site: str = typer.Option("resid_pre", help="Residual-stream site: resid_pre | resid_mid | resid_post."),
    kl_threshold: float = typer.Option(0.1, "--kl-threshold", help="Max KL (nats) on harmless first-token distributions under ablation."),
    max_layer_frac: float = typer.Option(0.8, "--max-layer-frac", help="Candidates: layer < frac * n_layers (a fraction in (0, 1])."),
    layers: str | None = typer.Option(None, "--candidate-layers", help="Layers to score for selection, e.g. 10-19 or 12,15 [default: all below the cut]."),
    batch_size: int = typer.Option(16, "--batch-size", help=BATCH_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    out: str | None = out_option(),
) -> None:
    """Difference-in-means directions per layer x position and the selected refusal direction:
    writes directions.h5, sweep.csv/.md, sweep.png and manifest.json (with the prompts used)
    in a run folder under $REFUSALSCOPE_ARTIFACTS/runs (or --out); prints the selection to
    stderr and the folder to stdout. That folder is the RUN of `generate --steer
    ablate:RUN/directions.h5` and `defend steer -d`.

    \b
    Example:
      refusalscope probe sweep -m smollm2-135m --n 16 --n-val 8 --out runs/sweep
    """
    from refusalscope.runs import Run

    with Run.at(out):
        run = sweep(model=model, adapter=adapter, n=n, n_val=n_val, positions=positions,
                    split=split, site=site, kl_threshold=kl_threshold, max_layer_frac=max_layer_frac,
                    layers=layers, batch_size=batch_size, device=device, dtype=dtype)
    typer.echo(str(run.path))


def sweep(*, model: str, adapter: str | None = None, n: int = 64, n_val: int = 32,
          positions: str = "post-instruction", split: str = "direction", site: str = "resid_pre",
          kl_threshold: float = 0.1, max_layer_frac: float = 0.8, layers: str | None = None,
          batch_size: int = 16, device: str = "auto",
          dtype: str = "auto"):  # type: ignore[no-untyped-def]
    """The sweep as a plain function (`probe --layer-sweep` forwards here); returns the Run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from refusalscope.cli._common import console
    from refusalscope.errors import UserError
    from refusalscope.interp.steering import parse_layers
    from refusalscope.interp.sweep import run_sweep
    from refusalscope.models.handle import RuntimeOptions

    RuntimeOptions(device=device, dtype=dtype)  # a bad or absent device fails before the data

    if split != "direction":
        raise UserError(f"--split {split!r}: directions are computed on the `direction` split "
                        "only (eval prompts stay held out)")
    con = console()
    con.stderr = True
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=con)
    task = bar.add_task("select", total=None)

    def on_candidate(done: int, total: int) -> None:
        if done == 1:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        run = run_sweep(model=model, adapter=adapter, n=n, n_val=n_val, positions=positions, split=split,
                        site=site, kl_threshold=kl_threshold, max_layer_frac=max_layer_frac,
                        layers=None if layers is None else parse_layers(layers, None),
                        batch_size=batch_size, device=device, dtype=dtype,
                        on_candidate=on_candidate)
    finally:
        bar.stop()
    a = run.manifest.extra["selected"]
    typer.echo(f"selected layer {a['layer']} position {a['pos']} "
               f"(filter passed: {a['filter_passed']}); bypass {a['bypass']:.2f}, "
               f"induce {a['induce']:.2f}, KL {a['kl']:.3f}", err=True)
    return run
