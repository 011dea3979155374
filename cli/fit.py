"""`refusalscope fit`: scaling fits of RRR / RD / CE over scored runs, tables and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from refusalscope.cli._common import console, user_errors

from refusalscope.errors import UserError


def register(app: typer.Typer) -> None:
    app.command("fit")(fit)


@user_errors
def fit(
    run_args: list[str] | None = typer.Argument(None, metavar="RUN", show_default=False,
                                                help="Scored generate runs (same as --runs)."),
    metric: str = typer.Option("rrr", help="rrr | rd | ce."),
    x: str = typer.Option("both", "--x", help="size (vs parameters) | compute (vs attack "
                                              "compute) | both (joint fit)."),
    runs: list[str] | None = typer.Option(None, "--runs", metavar="RUN", help="Scored "
                                          "generate runs (repeat the option) [default: every "
                                          "one in --runs-dir]."),
    runs_dir: Path | None = typer.Option(None, "--runs-dir", metavar="DIR", help="Folder of "
                                         "run folders [default: the artifacts runs folder]."),
    out: Path | None = typer.Option(None, metavar="DIR", help="Output folder [default: a new "
                                    "`fit` run folder]; never overwritten."),
    n_boot: int = typer.Option(1000, help="Bootstrap replicates (prompts and seeds)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    interaction: bool = typer.Option(False, help="Add b_NC·log N·log C to the joint fit."),
    c0: float | None = typer.Option(None, help="Use log(C + c0) for every run instead of a "
                                    "separate baseline intercept."),
    rd_over: str = typer.Option("refused", help="RD over prompts refused at baseline "
                                "(refused) or all prompts (all)."),
    figures: bool = typer.Option(True, help="Write PNG + PDF figures."),
) -> None:
    """Fit METRIC vs model size (log-linear, log-log, logistic on per-prompt labels) and vs
    attack compute (FLOPs and examples), with bootstrap CIs over prompts and seeds; writes
    fit.json, CSV, markdown and LaTeX tables, and figures."""
    from refusalscope.paths import runs_dir as default_runs_dir
    from refusalscope.study.fit import FitConfig, fit_metric
    from refusalscope.study.points import find_runs, gather_points

    cfg = FitConfig(metric=metric, x=x, n_boot=n_boot, seed=seed, interaction=interaction,
                    c0=c0, rd_over=rd_over)
    runs = [*(run_args or []), *(runs or [])]
    if runs and runs_dir is not None:
        raise UserError("give --runs or --runs-dir, not both")
    if out is not None and (out / "fit.json").exists():
        raise UserError(f"{out} already holds a fit.json: choose another --out")
    where = runs_dir or default_runs_dir()
    paths: list[Any] = list(runs) if runs else find_runs(where)
    if not paths:
        raise UserError(f"no runs found: no scored generate runs in {where} (generate, then "
                        "score them), or give --runs RUN...")
    result = fit_metric(gather_points(paths), cfg)
    folder = _write(result, cfg, out, figures)
    _print(result, folder)


def _write(result: Any, cfg: Any, out: Path | None, figures: bool) -> Path:
    from refusalscope.runs import Run
    from refusalscope.study.figures import plot_all
    from refusalscope.study.tables import write_fit

    if out is not None:
        write_fit(result, out)
        if figures:
            plot_all(result, out / "figures")
        return out
    run = Run.create("fit", {**cfg.to_dict(), "runs": result.runs}, input_runs=result.runs)
    try:
        write_fit(result, run.path)
        if figures:
            plot_all(result, run.path / "figures")
    except BaseException as e:
        run.finish("error", f"{type(e).__name__}: {e}"[:500])
        raise
    run.finish("success")
    return run.path


def _print(result: Any, folder: Path) -> None:
    from rich.markup import escape
    from rich.table import Table

    from refusalscope.study.tables import coefficient_rows

    level = f"{100 * (1 - result.config.alpha):g}% CI"
    table = Table(title=f"{result.config.metric.upper()} fits vs {result.config.x}")
    for col in ("fit", "coef", "estimate", level, "quality"):
        table.add_column(col, justify="right" if col == "estimate" else "left")
    for r in coefficient_rows(result):
        table.add_row(escape(r["fit"]), r["coefficient"], f"{r['estimate']:.4g}",
                      f"[{r['ci_lo']:.4g}, {r['ci_hi']:.4g}]", r["quality"])
    out = console()
    out.print(table)
    out.print(escape(f"baseline: {result.baseline_handling}"))
    for note in result.notes:
        out.print(escape(f"note: {note}"))
    out.print(escape(f"wrote {folder}"))
