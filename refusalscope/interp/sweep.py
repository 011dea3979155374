"""Layer sweep into a run folder: `directions.h5`, `sweep.csv`, `sweep.md`, `sweep.png`/`.pdf`.

Prompts come from the `direction` split only: the first `n` harmful and harmless prompts give
the class means, the next `n_val` of each the validation set for selection and probe accuracy.
As in the reference pipeline (Arditi et al., `filter_data`), both sets are first filtered by
the model's baseline refusal score: harmful prompts are kept when it is > 0 (the model refuses
them), harmless ones when it is < 0, so the mean difference is not diluted by prompts the model
treats the other way. Where a class would keep fewer than the minimum (2 for the means, 1 for
validation; weak refusers), that class is left unfiltered and the manifest says so.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refusalscope.errors import UserError

log = logging.getLogger(__name__)

DIRECTIONS = "directions.h5"


@dataclass(frozen=True)
class SweepConfig:
    """What to sweep. Saved in the run manifest."""

    model: str
    adapter: str | None = None
    n: int = 64
    n_val: int = 32
    positions: str = "post-instruction"
    site: str = "resid_pre"
    kl_threshold: float = 0.1
    max_layer_frac: float = 0.8
    split: str = "direction"
    layers: tuple[int, ...] | None = None  # candidate layers for selection (None: all)
    filter_prompts: bool = True  # keep harmful with baseline refusal score > 0, harmless < 0
    seed: int = 0  # nothing is sampled; kept for the run-id convention

    def __post_init__(self) -> None:
        from refusalscope.interp.directions import READ_SITES
        from refusalscope.interp.positions import check_kind

        if self.n < 2 or self.n_val < 1:
            raise UserError(f"--n must be >= 2 and --n-val >= 1 (got {self.n}, {self.n_val})")
        check_kind(self.positions)
        if self.site not in READ_SITES:
            raise UserError(f"unknown site {self.site!r}: one of {', '.join(READ_SITES)}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = None if self.layers is None else list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepConfig:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if d.get("layers") is not None:
            d["layers"] = tuple(d["layers"])
        return cls(**d)


def split_prompts(cfg: SweepConfig) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """(train harmful, train harmless, val harmful, val harmless) from the direction split."""
    from refusalscope.data.load import load_split

    need = cfg.n + cfg.n_val
    h = load_split(cfg.split, n=need)
    hl = load_split(cfg.split, harmless=True, n=need)
    if len(h) < need or len(hl) < need:
        raise UserError(f"the {cfg.split} split has {len(h)} harmful and {len(hl)} harmless "
                        f"prompts; --n + --n-val = {need} of each are needed")
    return h[:cfg.n], hl[:cfg.n], h[cfg.n:], hl[cfg.n:]


def filter_by_refusal(harmful: list[Any], harmless: list[Any], score_h: Any, score_l: Any,
                      min_keep: int) -> tuple[list[Any], list[Any], dict[str, dict[str, Any]]]:
    """Harmful prompts with refusal score > 0 and harmless ones with score < 0 (log-odds, see
    `select.refusal_scores`), and per class `{kept, dropped, unfiltered}`.

    A class that would keep fewer than `min_keep` prompts is returned whole (`unfiltered`
    True, `kept` its full size, `dropped` 0), so a weak refuser still gets a direction.

    Example:
        filter_by_refusal(["a", "b"], ["c"], [1.0, -2.0], [-0.5], 1)[:2] == (["a"], ["c"])
    """
    out, counts = [], {}
    for name, prompts, scores, keep in (("harmful", harmful, score_h, lambda x: x > 0),
                                        ("harmless", harmless, score_l, lambda x: x < 0)):
        kept = [p for p, x in zip(prompts, scores, strict=True) if keep(float(x))]
        unfiltered = len(kept) < min_keep
        if unfiltered:
            kept = list(prompts)
        out.append(kept)
        counts[name] = {"kept": len(kept), "dropped": len(prompts) - len(kept),
                        "unfiltered": unfiltered}
    return out[0], out[1], counts


def filter_prompts(handle: Any, tr_h: list[Any], tr_l: list[Any], va_h: list[Any],
                   va_l: list[Any], refusal_words: tuple[str, ...], batch_size: int,
                   ) -> tuple[list[list[Any]], dict[str, Any]]:
    """The four prompt sets filtered by the model's baseline refusal score (one forward pass
    per prompt), and the counts per set for the manifest."""
    from refusalscope.interp.directions import chat_texts
    from refusalscope.interp.select import first_token_logits, refusal_scores, refusal_token_ids

    ids = refusal_token_ids(handle.tokenizer, refusal_words)

    def score(ps: list[Any]) -> Any:
        return refusal_scores(first_token_logits(handle, chat_texts(handle, ps), (), batch_size), ids)

    th, tl, train = filter_by_refusal(tr_h, tr_l, score(tr_h), score(tr_l), 2)
    vh, vl, val = filter_by_refusal(va_h, va_l, score(va_h), score(va_l), 1)
    return [th, tl, vh, vl], {"train": train, "val": val}


def run_sweep(*, device: str = "auto", dtype: str = "auto", batch_size: int = 16,
              on_candidate: Any = None, **config: Any) -> Any:
    """Compute, select and write everything; returns the finished Run."""
    from refusalscope.interp.directions import compute_directions, save_directions
    from refusalscope.interp.select import SelectConfig, select_direction
    from refusalscope.models.handle import ModelHandle, RuntimeOptions
    from refusalscope.runs import Run

    cfg = SweepConfig(**config)
    scfg = SelectConfig(kl_threshold=cfg.kl_threshold, max_layer_frac=cfg.max_layer_frac,
                        layers=cfg.layers)
    tr_h, tr_l, va_h, va_l = split_prompts(cfg)
    handle = ModelHandle.load(cfg.model, adapter=cfg.adapter,
                              options=RuntimeOptions(device=device, dtype=dtype))
    run = Run.create("probe-sweep", cfg.to_dict(), model=cfg.model, seed=cfg.seed)
    with run.guard():
        if cfg.filter_prompts:
            (tr_h, tr_l, va_h, va_l), kept = filter_prompts(
                handle, tr_h, tr_l, va_h, va_l, scfg.refusal_words, batch_size)
            run.manifest.extra["prompt_filter"] = kept
        d = compute_directions(handle, tr_h, tr_l, kind=cfg.positions, site=cfg.site,
                               batch_size=batch_size)
        select_direction(handle, d, va_h, va_l, scfg, batch_size=batch_size,
                         on_candidate=on_candidate)
        save_directions(run.file(DIRECTIONS), d)
        rows = write_table(d, run.path)
        plot_sweep(d, run.file("sweep.png"))
    best = next(r for r in rows if (r["layer"], r["pos"]) == d.selected)
    run.manifest.extra["selected"] = {**best, "filter_passed": d.attrs["filter_passed"]}
    run.manifest.extra["selection"] = d.attrs
    run.manifest.extra["n_layers"] = handle.n_layers
    run.finish("success")
    return run


def write_table(d: Any, folder: Path) -> list[dict[str, Any]]:
    """`sweep.csv` (every layer x position) and `sweep.md` (per layer: best-bypass position)."""
    from refusalscope.interp.select import summary_table

    rows = summary_table(d)
    with open(folder / "sweep.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    sel = d.selected
    lines = [f"# Refusal-direction sweep: {d.model} ({d.site}, {d.positions})", "",
             f"Selected: layer {sel[0]}, position {sel[1]} of {d.mean_harmful.shape[1]}; "
             f"filter (induce > 0, KL < {d.attrs['kl_threshold']}, layer < "
             f"{d.attrs['layer_cut']}) passed: {d.attrs['filter_passed']}. Refusal tokens: "
             f"{d.attrs['refusal_tokens']}. Baseline refusal score: harmful "
             f"{d.attrs['baseline_harmful']:.2f}, harmless {d.attrs['baseline_harmless']:.2f}.", "",
             "| layer | pos | norm | probe acc | cos prev | bypass | induce | KL | passed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for layer in range(d.n_layers):
        mine = [r for r in rows if r["layer"] == layer]
        r = min(mine, key=lambda r: (np.nan_to_num(r["bypass"], nan=np.inf), r["pos"]))
        if sel[0] == layer:
            r = next(x for x in mine if x["pos"] == sel[1])
        lines.append(f"| {layer}{' *' if sel[0] == layer else ''} | {r['pos']} | {r['norm']:.2f} "
                     f"| {r['probe_acc']:.3f} | {r['cos_prev']:.3f} | {r['bypass']:.2f} | "
                     f"{r['induce']:.2f} | {r['kl']:.3f} | {r['passed']} |")
    (folder / "sweep.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rows


def plot_sweep(d: Any, png: Path) -> None:
    """Metrics vs layer, one line per position: PNG and PDF (matplotlib Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = d.metrics
    n_pos = d.mean_harmful.shape[1]
    panels = [("norm", "direction norm"), ("probe_acc", "held-out probe accuracy"),
              ("cos_prev", "cosine to previous layer"), ("bypass", "refusal score, ablated (harmful)"),
              ("induce", "refusal score, added (harmless)"), ("kl", "KL harmless, ablated")]
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for p in range(n_pos):
            sel = m["pos"] == p
            ax.plot(m["layer"][sel], m[key][sel], marker=".", lw=1,
                    label=f"pos {p - n_pos}" if n_pos > 1 else d.positions)
        if key == "kl":
            ax.axhline(d.attrs["kl_threshold"], color="k", ls="--", lw=0.8)
            ax.set_yscale("log")
        ax.axvline(d.selected[0], color="r", ls=":", lw=1)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("layer")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{d.model}: selected layer {d.selected[0]}, position {d.selected[1]}")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    fig.savefig(png.with_suffix(".pdf"))
    plt.close(fig)
