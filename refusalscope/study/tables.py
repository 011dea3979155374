"""Tables of a `FitResult`: coefficients and per-condition cells as CSV, markdown and LaTeX.

Rows are flat (one per fit × coefficient, one per condition) so that a spreadsheet, pandas or a
paper's `\\input{}` can take them as they are. Numbers are written with 4 significant digits
in markdown/LaTeX and in full in CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_json, atomic_write_text

COEF_COLUMNS = ("fit", "metric", "form", "x", "c_axis", "group", "coefficient", "estimate",
                "ci_lo", "ci_hi", "n_runs", "n_obs", "quality", "n_boot_ok")
CELL_COLUMNS = ("model", "n_params", "n", "control", "strength", "n_data", "steps", "examples",
                "flops", "n_runs", "n_obs", "mean", "ci_lo", "ci_hi")


def coefficient_rows(result: Any) -> list[dict[str, Any]]:
    """One row per fit and coefficient (`result` is a `FitResult`)."""
    rows = []
    for f in result.fits:
        q = f.quality
        qual = (f"pseudo-R2={q['pseudo_r2_mcfadden']:.3f} deviance={q['deviance']:.1f}"
                if "deviance" in q else f"R2={q['r2']:.3f}")
        for name, est, (lo, hi) in zip(f.spec.coef_names, f.estimate, f.ci, strict=True):
            rows.append({"fit": f.spec.name, "metric": f.spec.metric, "form": f.spec.form,
                         "x": f.spec.x, "c_axis": f.spec.c_axis or "", "group": f.spec.group,
                         "coefficient": name, "estimate": float(est), "ci_lo": float(lo),
                         "ci_hi": float(hi), "n_runs": q["n_runs"], "n_obs": q["n_obs"],
                         "quality": qual, "n_boot_ok": f.n_boot_ok})
    return rows


def cell_rows(result: Any) -> list[dict[str, Any]]:
    """One row per condition (model × attack strength, seeds pooled)."""
    return [{**{k: c[k] for k in CELL_COLUMNS if k in c}, "ci_lo": c["ci"][0],
             "ci_hi": c["ci"][1]} for c in result.cells]


def to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in columns})
    return buf.getvalue()


def _num(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.4g}"
    return "" if v is None else str(v)


def to_markdown(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table (pipes in cells escaped).

    Example:
        >>> print(to_markdown([{"a": 1.23456, "b": "x|y"}], ["a", "b"]))
        | a | b |
        |---|---|
        | 1.235 | x\\|y |
    """
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "".join("| " + " | ".join(_num(r.get(k)).replace("|", "\\|") for k in columns)
                   + " |\n" for r in rows)
    return head + body.rstrip("\n")


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(rows: Sequence[dict[str, Any]], columns: Sequence[str], caption: str = "") -> str:
    """A booktabs `tabular` (needs `\\usepackage{booktabs}`), special characters escaped."""
    spec = "".join("r" if rows and isinstance(rows[0].get(k), int | float) else "l"
                   for k in columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}",
             r"\toprule", " & ".join(tex_escape(c) for c in columns) + r" \\", r"\midrule"]
    lines += [" & ".join(tex_escape(_num(r.get(k))) for k in columns) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{tex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def coefficient_summary(result: Any) -> list[dict[str, Any]]:
    """Compact rows for markdown/LaTeX: estimate [lo, hi] in one column."""
    head = f"estimate [{_level(result)} CI]"
    return [{"fit": r["fit"], "coefficient": r["coefficient"],
             head: f"{r['estimate']:.4g} [{r['ci_lo']:.4g}, {r['ci_hi']:.4g}]",
             "fit quality": r["quality"], "runs": r["n_runs"], "n": r["n_obs"]}
            for r in coefficient_rows(result)]


FIT_JSON = "fit.json"


def write_fit(result: Any, folder: str | Path) -> list[Path]:
    """Write `fit.json`, `coefficients.{csv,tex}`, `cells.{csv,tex}` and `fit.md` into `folder`.

    Never overwrites: a folder that already holds a `fit.json` is a `UserError`.

    Example:
        write_fit(fit_metric(points, FitConfig("rrr", "compute")), "artifacts/fits/rrr")
    """
    folder = Path(folder)
    if (folder / FIT_JSON).exists():
        raise UserError(f"{folder} already holds a {FIT_JSON}: choose another --out")
    folder.mkdir(parents=True, exist_ok=True)
    coefs, cells = coefficient_rows(result), cell_rows(result)
    summary = coefficient_summary(result)
    metric = result.config.metric.upper()
    files = {
        "coefficients.csv": to_csv(coefs, COEF_COLUMNS),
        "cells.csv": to_csv(cells, CELL_COLUMNS),
        "coefficients.tex": to_latex(summary, list(summary[0]) if summary else ["fit"],
                                     caption=f"{metric} fits: coefficients with bootstrap "
                                             f"{_level(result)} CIs"),
        "cells.tex": to_latex(cells, CELL_COLUMNS,
                              caption=f"{metric} per model and attack strength, bootstrap "
                                      f"{_level(result)} CIs"),
        "fit.md": _markdown(result, summary, cells),
    }
    out = []
    for name, text in files.items():
        atomic_write_text(folder / name, text)
        out.append(folder / name)
    atomic_write_json(folder / FIT_JSON, result.to_dict())  # last: its presence means complete
    return out + [folder / FIT_JSON]


def _sizes_line(result: Any) -> str:
    """What N is in these fits, and which models are controls."""
    kind = getattr(result.config, "n_kind", "non-embedding")
    what = {"non-embedding": "non-embedding parameters (without input embedding and LM head)",
            "total": "released parameters (tied embeddings counted once)"}.get(kind, kind)
    controls = sorted({c["model"] for c in result.cells if c.get("control")})
    kept = getattr(result.config, "include_controls", False)
    return (f"N (column n) = {what}; n_params = as loaded." + (
        f" Controls (never refuse): {', '.join(controls)}, "
        + ("kept in" if kept else "left out of") + " the fits vs size." if controls else ""))


def _level(result: Any) -> str:
    return f"{100 * (1 - result.config.alpha):g}%"


def _interval_text(cfg: Any) -> str:
    """How the logistic fits' intervals were made (run-mean fits always use percentiles)."""
    interval = getattr(cfg, "interval", "percentile")
    what = {"wald": "estimate ± t·SE with a prompt-clustered sandwich SE (+ a between-seed "
                    "term)",
            "studentized": "prompt-cluster bootstrap-t", "bca": "prompt-cluster bootstrap BCa",
            "percentile": "prompt-cluster bootstrap percentiles"}.get(interval, interval)
    est = getattr(cfg, "estimator", "mle")
    return f"logistic fits ({est}) by {interval} ({what}), run-mean fits by bootstrap percentiles"


def _markdown(result: Any, summary: list[dict[str, Any]], cells: list[dict[str, Any]]) -> str:
    cfg = result.config
    lines = [f"# {cfg.metric.upper()} fits vs {cfg.x}", "",
             f"{len(result.runs)} runs; {_level(result)} CIs: {_interval_text(cfg)}; "
             f"bootstrap (curves' bands, run-mean fits): {cfg.n_boot} replicates over prompt "
             f"ids (paired across runs) and seeds, seed {cfg.seed}.",
             "", f"Baseline: {result.baseline_handling}.", "", _sizes_line(result), "",
             "## Coefficients", "",
             to_markdown(summary, list(summary[0]) if summary else ["fit"]), "",
             "## Per model and attack strength", "", to_markdown(cells, CELL_COLUMNS)]
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"
