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
                                         "run folders, searched at any depth (a study folder "
                                         "works) [default: $REFUSALSCOPE_ARTIFACTS/runs]."),
    out: Path | None = typer.Option(None, metavar="DIR", help="Output folder [default: a new "
                                    "`fit` run under $REFUSALSCOPE_ARTIFACTS/runs]; never "
                                    "overwritten."),
    n_boot: int = typer.Option(1000, help="Bootstrap replicates (prompts and seeds)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    interaction: bool = typer.Option(False, help="Add b_NC·log N·log C to the joint fit."),
    c0: float | None = typer.Option(None, help="Use log(C + c0) for every run instead of a "
                                    "separate baseline intercept; c0 in the units of the "
                                    "compute axis (FLOPs by default)."),
    rd_over: str = typer.Option("refused", help="RD over prompts refused at baseline "
                                "(refused) or all prompts (all)."),
    estimator: str | None = typer.Option(None, help="Logistic (RRR) fits: firth (Jeffreys-"
                                         "penalised, finite when a baseline refuses every "
                                         "prompt; the default) | mle (plain maximum "
                                         "likelihood, fails on separation)."),
    interval: str | None = typer.Option(None, help="Logistic fits' CIs: wald (t interval with "
                                        "a prompt-clustered sandwich SE; the default) | "
                                        "studentized (percentile-t cluster bootstrap) | bca | "
                                        "percentile."),
    n_kind: str = typer.Option("non-embedding", "--n-kind", help="Model size N in the fits: "
                               "non-embedding (parameters without input embedding and LM head, "
                               "Kaplan et al.) | total (the released count, tied embeddings "
                               "once)."),
    include_controls: bool = typer.Option(False, "--include-controls", help="Keep control "
                                          "models (which never refuse: the registry's, and "
                                          "--control) in the fits vs size."),
    control: list[str] | None = typer.Option(None, "--control", metavar="MODEL", help="Mark "
                                             "a model (name or folder) as a control; repeat "
                                             "the option."),
    figures: bool = typer.Option(True, help="Write PNG + PDF figures."),
    half_life: bool = typer.Option(False, "--half-life", help="Also the attack half-life S½ "
                                   "per model x attack (x defense): the compute at which RRR "
                                   "falls to half its baseline, with CIs and its slope vs N "
                                   "(half_life.csv|md|png; --metric rrr)."),
    c_axis: str | None = typer.Option(None, "--c-axis", help="Attack compute axis of the "
                                      "compute and joint fits and of the half-life figure: "
                                      "examples | steps | flops | pretrain-fraction [default: "
                                      "fits on flops and examples, the figure on flops]."),
) -> None:
    """Fit METRIC vs model size (log-linear, log-log, logistic on per-prompt labels) and vs
    attack compute (FLOPs and examples), with bootstrap CIs over prompts and seeds; writes
    fit.json, CSV, markdown and LaTeX tables, and figures into a new `fit` run under
    $REFUSALSCOPE_ARTIFACTS/runs (or --out), and prints the fits and the folder.

    \b
    Example:
      refusalscope fit --runs-dir artifacts/studies/quickstart --metric rrr --x size
    """
    from refusalscope.paths import runs_dir as default_runs_dir
    from refusalscope.study.fit import FitConfig, fit_metric
    from refusalscope.study.points import find_runs, gather_points

    chosen = {k: v for k, v in (("estimator", estimator), ("interval", interval)) if v}
    cfg = FitConfig(metric=metric, x=x, n_boot=n_boot, seed=seed, interaction=interaction,
                    c0=c0, rd_over=rd_over, n_kind=n_kind, include_controls=include_controls,
                    c_axis=c_axis, **chosen)
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
    points = gather_points(paths, controls=control or ())
    half = _half_life(points, cfg, c_axis or "flops") if half_life else None
    result = fit_metric(points, cfg)
    folder = _write(result, cfg, out, figures, half)
    _print(result, folder)
    if half is not None:
        _print_half(half)


def _half_life(points: list[Any], cfg: Any, c_axis: str) -> Any:
    """The half-life result for `--half-life` (before anything is written: errors come first)."""
    from refusalscope.study.halflife import HalfLifeConfig, half_life

    if cfg.metric != "rrr":
        raise UserError(f"--half-life needs --metric rrr (S½ is where RRR falls to half its "
                        f"baseline; got --metric {cfg.metric})")
    return half_life(points, HalfLifeConfig(
        c_axis=c_axis, n_kind=getattr(cfg, "n_kind", "non-embedding"), n_boot=cfg.n_boot,
        seed=cfg.seed, alpha=cfg.alpha,
        include_controls=getattr(cfg, "include_controls", False)))


def _print_half(half: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from refusalscope.study.halflife import short_name, slope_text

    level = f"{100 * (1 - half.config.alpha):g}% CI"
    table = Table(title=f"attack half-life S½ (RRR at half its baseline), {level}")
    for col in ("model", "attack", "baseline RRR", "S½ examples", "S½ FLOPs"):
        table.add_column(col)
    for r in half.rows:
        cells = [r.axes[a].text() if a in r.axes else "–" for a in ("examples", "flops")]
        table.add_row(escape(short_name(r.model) + (" (control)" if r.control else "")),
                      escape(r.attack + ("" if r.defense == "none" else f" [{r.defense}]")),
                      f"{r.baseline_observed:.2f}", *map(escape, cells))
    out = console()
    out.print(table)
    for s in half.slopes:
        out.print(escape(f"S½ ∝ N^{slope_text(s)} in {s.axis} ({s.attack}"
                         + ("" if s.defense == "none" else f" [{s.defense}]")
                         + f", {len(s.models)} sizes); cost per step ∝ N^{s.cost_slope:.2f}"))
    for note in half.notes:
        out.print(escape(f"note: {note}"))


def _write(result: Any, cfg: Any, out: Path | None, figures: bool, half: Any = None) -> Path:
    from refusalscope.runs import Run
    from refusalscope.study.figures import plot_all
    from refusalscope.study.halflife_files import write_half_life
    from refusalscope.study.tables import write_fit

    if out is not None:
        write_fit(result, out)
        if figures:
            plot_all(result, out / "figures")
        if half is not None:
            write_half_life(half, out, figure=figures)
        return out
    run = Run.create("fit", {**cfg.to_dict(), "runs": result.runs}, input_runs=result.runs)
    with run.guard():
        write_fit(result, run.path)
        if figures:
            plot_all(result, run.path / "figures")
        if half is not None:
            write_half_life(half, run.path, figure=figures)
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
