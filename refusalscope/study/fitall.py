"""Fit every metric the runs have, in one call: what a study report needs from `fit`.

`fit_all` tries each of RRR, RD and CE; for each it picks the richest axis the data allow
(`both`, else `compute`, else `size`), writes `<folder>/<metric>/` (as `refusalscope fit --out`
does) and finally one `panels.png/.pdf` with a row per metric. A metric the runs do not have
(CE without classifier probabilities, RD without a baseline) is skipped with its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from refusalscope.errors import UserError
from refusalscope.study.fit import FitConfig, FitResult, fit_metric
from refusalscope.study.points import METRICS, Point

AXES = ("both", "compute", "size")


@dataclass
class FitAll:
    """The fits made (metric -> result) and why the others were not."""

    results: dict[str, FitResult]
    skipped: dict[str, str]
    folder: Path

    def markdown(self) -> str:
        """A report section: each metric's coefficient table, its figures, and the skips."""
        from refusalscope.study.tables import coefficient_summary, to_markdown

        out = []
        for metric, res in self.results.items():
            rows = coefficient_summary(res)
            out += [f"### {metric.upper()} (vs {res.config.x})", "",
                    f"Baseline: {res.baseline_handling}.", "",
                    to_markdown(rows, list(rows[0])), ""]
            out += [f"![{p.stem}]({p.relative_to(self.folder)})" for p in
                    sorted((self.folder / metric / "figures").glob("*.png"))] + [""]
            out += [f"- note: {n}" for n in res.notes] + ([""] if res.notes else [])
        out += [f"- {m.upper()} not fitted: {why}" for m, why in self.skipped.items()]
        return "\n".join(out).rstrip() + "\n"


def fit_all(points: Sequence[Point], folder: str | Path, cfg: FitConfig | None = None,
            metrics: Sequence[str] = METRICS, figures: bool = True) -> FitAll:
    """Fit each metric on its richest axis and write it under `folder`.

    `cfg` gives the bootstrap and model options (its `metric` and `x` are chosen here).

    Example:
        done = fit_all(gather_points(find_runs("artifacts/runs")), "report/fits")
        print(done.markdown())
    """
    from refusalscope.study.figures import plot_all, plot_panels
    from refusalscope.study.tables import write_fit

    folder = Path(folder)
    base = cfg or FitConfig()
    results: dict[str, FitResult] = {}
    skipped: dict[str, str] = {}
    for metric in metrics:
        reasons = []
        for x in AXES:
            try:
                results[metric] = fit_metric(points, replace(base, metric=metric, x=x))
                break
            except UserError as e:
                reasons.append(str(e))
        else:
            skipped[metric] = reasons[-1] if len(set(reasons)) == 1 else "; ".join(reasons)
            continue
        write_fit(results[metric], folder / metric)
        if figures:
            plot_all(results[metric], folder / metric / "figures")
    if figures and results:
        plot_panels(list(results.values()), folder)
    return FitAll(results, skipped, folder)
