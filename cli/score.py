"""`refusalscope score RUN...` / `refusalscope score --input FILE`: heuristic refusal scoring.

`score` is a Typer group whose default command is `runs`: any arguments that do not start
with a subcommand name are routed to it, so `score RUN...` means `score runs RUN...`. Later
subcommands (`score drift`, `score validate`, ...) are added to `score_app` with
`@score_app.command("drift")` and coexist with `score RUN...`. A run folder literally named
like a subcommand can be scored as `score ./drift` or `score runs drift`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from refusalscope.cli._common import console, user_errors
from typer.core import TyperGroup

from refusalscope.errors import UserError

DEFAULT_COMMAND = "runs"


class DefaultCommandGroup(TyperGroup):
    """A group that runs `DEFAULT_COMMAND` when the first argument is not a subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


score_app = typer.Typer(
    cls=DefaultCommandGroup,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Label responses as refusals and report refusal rates with 95% CIs. "
         "`refusalscope score RUN...` is short for `refusalscope score runs RUN...`; "
         "see `refusalscope score runs --help`.",
)


def register(app: typer.Typer) -> None:
    """Add the `score` group (with the subcommands other modules define) to the root app."""
    from refusalscope.cli import score_drift, score_validate

    score_drift.register(score_app)
    score_validate.register(score_app)
    app.add_typer(score_app, name="score")


@score_app.command(DEFAULT_COMMAND)
@user_errors
def score_runs(
    runs: Annotated[list[Path] | None, typer.Argument(
        metavar="RUN", show_default=False,
        help="Generate run folders (or run ids) to score.")] = None,
    input: Annotated[Path | None, typer.Option(
        "--input", "-i", help="Score a CSV/TSV/JSONL file instead of runs.")] = None,
    prompt_col: str = typer.Option("prompt", help="--input: prompt column."),
    response_col: str = typer.Option("response", help="--input: response column."),
    label_col: str | None = typer.Option(
        None, help="--input: harmful/harmless column [default: 'label' if present]."),
    assume_label: str = typer.Option(
        "harmful", help="--input without a label column: class of every row."),
    lists: str = typer.Option("refusalscope",
                              help="Phrase lists, comma-separated: refusalscope, "
                                   "gcg_individual, harmbench_advbench."),
    window: int = typer.Option(300, help="Characters searched by window-matched lists."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    n_boot: int = typer.Option(10_000, help="Bootstrap resamples."),
    allow_partial: bool = typer.Option(False, help="Score runs whose status is not success."),
) -> None:
    """Score generate runs in place (new scores.jsonl + metrics.json; never regenerates or
    overwrites), or score any --input file into a new `score` run."""
    from refusalscope.scoring import BootstrapSpec, HeuristicScorer
    from refusalscope.scoring.score import load_run, score_file, score_loaded

    if bool(runs) == (input is not None):
        raise UserError("give run folders or --input FILE (one of the two)")
    scorer = HeuristicScorer(lists=_split_lists(lists), window=window)
    if n_boot < 1:
        raise UserError(f"--n-boot must be at least 1, not {n_boot}")
    spec = BootstrapSpec(n_boot=n_boot, seed=seed)
    if input is not None:
        if assume_label not in ("harmful", "harmless"):
            raise UserError(f"--assume-label must be harmful or harmless, not {assume_label!r}")
        results = [score_file(input, scorer, prompt_col=prompt_col, response_col=response_col,
                              label_col=label_col, default_label=assume_label, bootstrap=spec)]
    else:
        # Validate every run before writing anything: one bad run leaves all untouched.
        loaded = [load_run(r, allow_partial=allow_partial) for r in runs or ()]
        results = [score_loaded(lr, scorer, bootstrap=spec) for lr in loaded]
    _print_table(results, scorer.version)


def _split_lists(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _print_table(results: list[Any], scorer_version: str) -> None:
    from rich.table import Table

    table = Table(title=f"refusals (heuristic {scorer_version})")
    table.add_column("run", no_wrap=True)  # shown whole on one line: users copy run ids
    for col in ("model", "label", "n", "refused", "rate", "95% CI", "Wilson 95%"):
        table.add_column(col, justify="right" if col in ("n", "refused", "rate") else "left",
                         no_wrap=col.endswith("95%") or col == "95% CI", overflow="fold")
    table.caption = ("95% CI: percentile bootstrap over prompts; it is a point at 0% or 100%, "
                     "where Wilson's interval is the one to quote.")
    for res in results:
        m = res.metrics
        for cls, s in m["by_label"].items():
            name = "RRR" if cls == "harmful" else "over-refusal"
            table.add_row(res.run.id, str(m.get("model") or "-"), f"{cls} ({name})", str(s["n"]),
                          str(s["refused"]), f"{s['rate']:.3f}",
                          f"[{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]",
                          f"[{s['wilson95'][0]:.3f}, {s['wilson95'][1]:.3f}]")
    out = console()
    out.print(table)
    for res in results:
        out.print(f"wrote {res.scores_path} and {res.metrics_path.name}")
