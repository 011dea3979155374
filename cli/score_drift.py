"""`refusalscope score drift BASELINE_RUN OTHER_RUN`: Refusal Drift between two runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from refusalscope.cli._common import console, user_errors

from refusalscope.errors import UserError


def register(group: typer.Typer) -> None:
    """Add `drift` to the `score` group."""
    group.command("drift")(drift)


@user_errors
def drift(
    baseline: Annotated[Path, typer.Argument(
        metavar="BASELINE_RUN", show_default=False,
        help="The generate run to compare against (e.g. the unattacked model).")],
    other: Annotated[Path, typer.Argument(
        metavar="OTHER_RUN", show_default=False,
        help="The generate run over the same prompts (attacked, prompted, sampled...).")],
    embedder: str | None = typer.Option(
        None, help="Sentence-transformers folder or hub id [default: all-MiniLM-L6-v2 from "
                   "the pinned offline wheel]."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    n_boot: int = typer.Option(10_000, help="Bootstrap resamples."),
    allow_partial: bool = typer.Option(False, help="Use runs whose status is not success."),
) -> None:
    """Refusal Drift: mean (1 - cosine) between the two runs' response embeddings, over
    prompts refused at baseline and over all shared prompts, with bootstrap 95% CIs.
    Writes drift.json (never overwriting) into OTHER_RUN. Prints RD with CIs.

    \b
    Example:
      refusalscope score drift runs/base runs/attacked
    """
    from refusalscope.runs import Run
    from refusalscope.scoring.drift import drift_between, load_embedder, write_drift
    from refusalscope.scoring.metrics import BootstrapSpec

    if n_boot < 1:
        raise UserError(f"--n-boot must be at least 1, not {n_boot}")
    spec = BootstrapSpec(n_boot=n_boot, seed=seed)
    other_run = Run.open(other)  # fail on a bad path before the embedder loads
    Run.open(baseline)
    result = drift_between(baseline, other_run, load_embedder(embedder), bootstrap=spec,
                           allow_partial=allow_partial)
    path = write_drift(other_run, result)
    _print(result, path)


def _print(r: dict[str, Any], path: Path) -> None:
    from rich.table import Table

    table = Table(title=f"Refusal Drift ({r['embedder']['name']}, 1 - cosine)")
    for col in ("prompts", "n", "RD", "95% CI"):
        table.add_column(col, justify="right" if col in ("n", "RD") else "left", no_wrap=True)
    for key, name in (("rd_refused", "refused at baseline"), ("rd_all", "all matched")):
        s = r[key]
        if s is None:
            table.add_row(name, "0", "-", "-")
        else:
            table.add_row(name, str(s["n"]), f"{s['mean']:.3f}",
                          f"[{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]")
    out = console()
    out.print(f"baseline {r['baseline_run']}\nother    {r['other_run']}")
    out.print(table)
    out.print(f"{r['n_matched']} prompts matched, {r['n_unmatched']} unmatched; baseline "
              f"refusals from {r['refusal_labels']['source']}")
    out.print(f"wrote {path}")
