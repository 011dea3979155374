"""Write `geometry.compare` results: CSV tables, a markdown summary and a figure (Agg backend)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refusalscope.fileio import atomic_write_text

FILE_CSV, SHIFT_CSV, SUMMARY_MD, FIGURE = "geometry.csv", "shift.csv", "geometry.md", "geometry.png"
MIN_NORM_REL = 1e-3  # below this a layer has no harmful-vs-harmless direction to speak of


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _md_table(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


_RUN = re.compile(r"^\d{8}T\d+Z_(?P<command>[^_]+)_.+_(?P<hash>[0-9a-f]{8})$")


def _short(name: str) -> str:
    """A legend-sized name: `probe 1a2b3c4d` for a run folder, else the name cut to 28 chars."""
    path = Path(str(name))
    for part in (path.name, *(q.name for q in path.parents[:2])):
        m = _RUN.match(part)
        if m:
            return f"{m['command']} {m['hash']}"
    return path.name[:28]


def _label(row: dict[str, Any]) -> str:
    if not row.get("adapter"):
        return row["model"]
    return f"{row['model']} + {_short(row['adapter'])}"


def _summary(file_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per file: where the direction is largest, the probe best and the rank lowest."""
    out = []
    for name in dict.fromkeys(r["file"] for r in file_rows):
        rows = [r for r in file_rows if r["file"] == name]
        big = max(rows, key=lambda r: r["norm_rel"])
        acc = max(rows, key=lambda r: (r["probe_acc"], -r["layer"]))
        # Layers where harmful and harmless do not differ (e.g. the shared last template token at
        # layer 0) have rank 0 trivially; the minimum is taken over the others.
        live = [r for r in rows if r["norm_rel"] > MIN_NORM_REL] or rows
        low = min(live, key=lambda r: r["erank"])
        out.append({"file": name, "model": rows[0]["model"], "n_layers": rows[0]["n_layers"],
                    "max norm_rel": big["norm_rel"], "at depth": big["rel_depth"],
                    "best probe acc": acc["probe_acc"], "first at depth": acc["rel_depth"],
                    "min erank": low["erank"], "erank at depth": low["rel_depth"],
                    "erank at best probe": acc["erank"]})
    return out


def write_report(folder: Path, file_rows: Sequence[dict[str, Any]],
                 shift_rows: Sequence[dict[str, Any]], *, site: str, pos: int) -> list[Path]:
    """geometry.csv (+ shift.csv), geometry.md and geometry.png in `folder`; returns the paths."""
    folder = Path(folder)
    written = [folder / FILE_CSV, folder / SUMMARY_MD, folder / FIGURE]
    atomic_write_text(folder / FILE_CSV, _csv(file_rows))
    md = [f"# Refusal-direction geometry ({site}, position index {pos})\n",
          "Per file (relative depth = layer / n_layers; probe = difference-in-means "
          "classifier, 5-fold held-out):\n", _md_table(_summary(file_rows), list(
              _summary(file_rows)[0]))]
    if shift_rows:
        atomic_write_text(folder / SHIFT_CSV, _csv(shift_rows))
        written.insert(1, folder / SHIFT_CSV)
        md += ["\nBefore/after on the same model (first file of a model = baseline):\n",
               _md_table(shift_rows, ["other", "layer", "cosine", "norm_ratio",
                                      "separation_along_base", "proj_harmful_base",
                                      "proj_harmful_other", "probe_acc_other",
                                      "base_probe_on_other", "verdict"])]
    atomic_write_text(folder / SUMMARY_MD, "\n".join(md))
    _figure(folder / FIGURE, file_rows, shift_rows, site)
    return written


def _figure(path: Path, file_rows: Sequence[dict[str, Any]],
            shift_rows: Sequence[dict[str, Any]], site: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = 2 if shift_rows else 1
    fig, axes = plt.subplots(n_rows, 3, figsize=(13, 3.6 * n_rows), squeeze=False)
    panels = [("norm_rel", "||diff in means|| / mean ||x||"),
              ("probe_acc", "held-out probe accuracy"), ("erank", "effective rank of differences")]
    for name in dict.fromkeys(r["file"] for r in file_rows):
        rows = [r for r in file_rows if r["file"] == name]
        for ax, (key, _) in zip(axes[0], panels, strict=True):
            ax.plot([r["rel_depth"] for r in rows], [r[key] for r in rows], marker=".",
                    label=_label(rows[0]))
    for ax, (_, title) in zip(axes[0], panels, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("relative depth (layer / n_layers)")
    axes[0][0].legend(fontsize=7, loc="best")
    if shift_rows:
        spanels = [("cosine", "cosine(baseline, other direction)"),
                   ("separation_along_base", "separation along baseline direction (x baseline)"),
                   ("base_probe_on_other", "baseline probe accuracy on other")]
        for other in dict.fromkeys(r["other"] for r in shift_rows):
            rows = [r for r in shift_rows if r["other"] == other]
            for ax, (key, _) in zip(axes[1], spanels, strict=True):
                ax.plot([r["layer"] for r in rows], [r[key] for r in rows], marker=".",
                        label=f"{_short(other)} vs {_short(rows[0]['baseline'])}")
        for ax, (_, title) in zip(axes[1], spanels, strict=True):
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("layer")
        axes[1][0].legend(fontsize=7, loc="best")
    fig.suptitle(f"refusal direction geometry at {site}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
