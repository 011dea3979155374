"""`refusalscope probe`: activations to HDF5 (`probe --model M ...`), `probe compare A.h5 B.h5`,
and `probe --layer-sweep` / `probe sweep` (refusal-direction selection, in `probe_sweep`)."""

from __future__ import annotations

import typer

from refusalscope.cli._common import (
    BATCH_HELP,
    DEVICE_HELP,
    DTYPE_HELP,
    out_option,
    rename_options,
    user_errors,
)

probe_app = typer.Typer(
    rich_markup_mode=None,
    help="Residual-stream activations of harmful vs harmless prompts, written to HDF5; "
         "refusal-direction geometry across model sizes and attacks. `probe -m MODEL` "
         "extracts activations.h5 into a run under $REFUSALSCOPE_ARTIFACTS/runs (or --out) "
         "and prints its path; `probe sweep` selects the refusal direction; `probe compare` "
         "compares files.\n\n\b\nExample:\n"
         "  refusalscope probe -m smollm2-135m --n 16 --layers 0-3 --out runs/acts",
)
# Kept as a literal (checked against ProbeConfig.n by tests/test_cli_vocabulary.py): reading
# the config here would import numpy for every `refusalscope --help`.
DEFAULT_N = 128
rename_options("probe", {"--model-dtype": "--dtype"})
rename_options("probe compare", {"--pos": "--position"})


def register(app: typer.Typer) -> None:
    """Add the `probe` group to the root app (with `sweep` when `probe_sweep` is present)."""
    try:
        from refusalscope.cli import probe_sweep
    except ImportError:  # the sweep lives in its own module; the group works without it
        probe_sweep = None  # type: ignore[assignment]
    if probe_sweep is not None and hasattr(probe_sweep, "register"):
        probe_sweep.register(probe_app)
    app.add_typer(probe_app, name="probe")


@probe_app.callback(invoke_without_command=True)
@user_errors
def probe(
    ctx: typer.Context,
    model: str | None = typer.Option(None, "--model", "-m", help="Registry name, local folder, .gguf file or hub id."),
    adapter: str | None = typer.Option(None, help="peft adapter folder, or a run folder holding one."),
    sites: str = typer.Option("resid_pre", help="Comma list: resid_pre,resid_mid,resid_post,attn_out,mlp_out."),
    layers: str = typer.Option("all", help="all | 0-27 | 3,5,7"),
    positions: str = typer.Option("post-instruction", help="post-instruction | last | mean"),
    n: int | None = typer.Option(None, "--n", help=f"Harmful and harmless prompts each (default {DEFAULT_N}); more than a class of the split holds is an error."),
    store_dtype: str = typer.Option("float32", "--store-dtype", help="Stored activation dtype: float16 | float32."),
    backend: str = typer.Option("native", help="native | transformer-lens | nnsight"),
    split: str = typer.Option("direction", help="Built prompt split: attack-train | direction | eval."),
    compression: str = typer.Option("lzf", help="HDF5 compression: lzf | gzip | none."),
    batch_size: int = typer.Option(16, "--batch-size", help=BATCH_HELP),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    dtype: str = typer.Option("auto", "--dtype", help=DTYPE_HELP + " Earlier releases read --dtype as the stored dtype: that is --store-dtype now."),
    layer_sweep: bool = typer.Option(False, "--layer-sweep", help="Select the refusal direction over layers x positions (same as `probe sweep`)."),
    out: str | None = out_option(),
) -> None:
    """Extract activations to activations.h5 (+ prompts.jsonl, manifest.json) in a run folder
    under $REFUSALSCOPE_ARTIFACTS/runs (or --out) and print the file's path; or a subcommand
    (compare, sweep, verify)."""
    if ctx.invoked_subcommand is not None:
        return
    from refusalscope.errors import UserError

    from refusalscope.runs import Run

    if model is None:
        raise UserError("--model is required (a name from `refusalscope models list`, a folder, "
                        "a .gguf file or a hub id), or a subcommand: compare, sweep")
    if layer_sweep:
        with Run.at(out):
            _forward_to_sweep(model=model, adapter=adapter, n=n, positions=positions,
                              split=split, sites=sites, batch_size=batch_size, device=device,
                              dtype=dtype)
        return
    from refusalscope.interp.activations import ProbeConfig, parse_sites, run_probe
    from refusalscope.models.handle import RuntimeOptions

    if dtype != "auto":  # the one rename that changed a meaning: say so while it is new
        typer.echo("note: `probe --dtype` is the model's dtype now (as on every command); the "
                   "stored activation dtype is --store-dtype", err=True)

    cfg = ProbeConfig(model=model, adapter=adapter, sites=parse_sites(sites), layers=layers,
                      positions=positions, n=DEFAULT_N if n is None else n, dtype=store_dtype,
                      backend=backend, split=split, compression=compression)
    opts = RuntimeOptions(device=device, dtype=dtype)
    with Run.at(out):
        run = _with_progress(cfg, opts, batch_size)
    typer.echo(str(run.file("activations.h5")))


def _forward_to_sweep(*, model, adapter, n, positions, split, sites, batch_size, device,  # type: ignore[no-untyped-def]
                      dtype) -> None:
    """`probe --layer-sweep` runs `probe_sweep.sweep` with the options it shares with `probe`."""
    import inspect

    from refusalscope.errors import UserError

    try:
        from refusalscope.cli.probe_sweep import sweep
    except ImportError:
        raise UserError("the layer sweep is not installed in this build "
                        "(refusalscope.cli.probe_sweep)") from None
    site_list = [s.strip() for s in sites.split(",") if s.strip()]
    if len(site_list) != 1:
        raise UserError("--layer-sweep reads one site: give --sites with a single site")
    given = {"model": model, "adapter": adapter, "n": n, "positions": positions, "split": split,
             "site": site_list[0], "batch_size": batch_size, "device": device, "dtype": dtype}
    accepted = inspect.signature(sweep).parameters
    run = sweep(**{k: v for k, v in given.items() if k in accepted and v is not None})
    typer.echo(str(run.path))


def _with_progress(cfg, opts, batch_size):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from refusalscope.cli._common import console
    from refusalscope.interp.activations import run_probe

    con = console()
    con.stderr = True
    bar = Progress(TextColumn("probe"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[rate]}"), console=con)
    task = bar.add_task("probe", total=None, rate="")
    stats = {"n": 0, "sec": 0.0}

    def on_start(total: int) -> None:
        bar.update(task, total=total)
        bar.start()

    def on_batch(done: int, seconds: float) -> None:
        stats["n"] += done
        stats["sec"] += seconds
        bar.update(task, advance=done, rate=f"{stats['n'] / max(stats['sec'], 1e-9):.1f} prompts/s")

    try:
        return run_probe(cfg, options=opts, batch_size=batch_size, on_start=on_start,
                         on_batch=on_batch)
    finally:
        bar.stop()


@probe_app.command("compare")
@user_errors
def compare(
    files: list[str] = typer.Argument(..., help="Probe files (activations.h5) or probe run folders."),
    site: str = typer.Option("resid_pre", help="Site to compare (each file must have it)."),
    pos: int = typer.Option(-1, "--position", metavar="INDEX", help="Position index within the stored positions (-1 = last)."),
    seed: int = typer.Option(0, help="Seed of the probe's cross-validation folds."),
    out: str | None = out_option(),
) -> None:
    """Direction norms, probe accuracy and effective rank per relative depth across files; for
    files of the same model (baseline first): cosine, shrink vs rotate, probe after attack.
    Writes geometry.md (printed) and its tables in a run folder under
    $REFUSALSCOPE_ARTIFACTS/runs (or --out) and prints their paths.

    \b
    Example:
      refusalscope probe compare runs/base-acts runs/attacked-acts --site resid_pre
    """
    from refusalscope.interp.geometry import compare as run_compare
    from refusalscope.interp.geometry import label, probe_path
    from refusalscope.interp.geometry_report import write_report
    from refusalscope.runs import Run

    paths = [probe_path(f) for f in files]
    file_rows, shift_rows = run_compare(paths, site=site, pos=pos, seed=seed)
    models = sorted({r["model"] for r in file_rows})
    with Run.at(out):
        run = Run.create("probe-compare", {"files": [str(p) for p in paths], "site": site,
                                           "pos": pos, "seed": seed},
                         model="+".join(models), seed=seed,
                         input_runs=[label(p) for p in paths if p.name == "activations.h5"])
    with run.guard():
        written = write_report(run.path, file_rows, shift_rows, site=site, pos=pos)
    run.finish("success")
    typer.echo(run.file("geometry.md").read_text(encoding="utf-8"))
    for p in written:
        typer.echo(str(p))


@probe_app.command("verify")
@user_errors
def verify(
    file: str = typer.Argument(..., help="A probe file (activations.h5) or probe run folder."),
    model: str = typer.Option(..., "--model", "-m", help="The model the file should come from."),
    adapter: str | None = typer.Option(None, help="peft adapter folder, or a run folder holding one."),
    n: int = typer.Option(4, "--n", help="Rows to re-extract and compare."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
) -> None:
    """Check a probe file against a model: same fingerprint, and its first rows reproduce.
    Prints one line (the largest difference); writes nothing.

    \b
    Example:
      refusalscope probe verify runs/acts -m smollm2-135m --n 4
    """
    from refusalscope.interp.activations import verify as run_verify
    from refusalscope.interp.geometry import probe_path
    from refusalscope.interp.h5io import read_meta
    from refusalscope.models.handle import ModelHandle, RuntimeOptions

    path = probe_path(file)
    meta = read_meta(path)  # a corrupt or foreign file fails before the model loads
    handle = ModelHandle.load(model, adapter=adapter,
                              options=RuntimeOptions(device=device, dtype="float32"))
    worst = run_verify(handle, path, n=n)
    typer.echo(f"{path}: fingerprint {meta.fingerprint} matches {model}; "
               f"its first {n} rows reproduce within {worst:.2e}")
