"""The steering defense's evaluation on `eval` at a fixed alpha, its files and its figure."""

from __future__ import annotations

import csv
from typing import Any

SIDES = (("harmful", "rrr"), ("harmless", "over_refusal"))


def evaluate(cfg: Any, alpha: float, *, options: Any = None,
             batch_size: int = 16) -> dict[str, Any]:
    """`generate` + score runs on the first `cfg.eval_n` eval prompts of each side, at alpha 0
    (the attacked model) and at `alpha`; {alpha: {side: {run, rate, ci, wilson95}}}.

    The alpha is an argument: it was fixed on the direction split before this is called.
    """
    from refusalscope.defenses.steer import spec_string
    from refusalscope.generate import GenerateConfig, run_generate
    from refusalscope.interp.steer_eval import make_scorer
    from refusalscope.scoring import BootstrapSpec
    from refusalscope.scoring.score import score_run

    scorer = make_scorer(cfg.scorer)
    out: dict[str, Any] = {}
    for a in sorted({0.0, alpha}):
        out[f"{a:g}"] = {}
        for side, metric in SIDES:
            gcfg = GenerateConfig(model=cfg.model, split="eval", n=cfg.eval_n,
                                  harmless=side == "harmless", adapter=cfg.adapter,
                                  max_new_tokens=cfg.eval_max_new_tokens, seed=cfg.seed,
                                  steer=None if a == 0 else spec_string(cfg, a))
            run = run_generate(gcfg, options=options, batch_size=batch_size)
            m = score_run(run.path, scorer, bootstrap=BootstrapSpec(seed=cfg.seed)).metrics[metric]
            out[f"{a:g}"][side] = {"run": str(run.path), "n": m["n"], "rate": m["rate"],
                                   "ci": m["ci"], "wilson95": m["wilson95"]}
    return out


def write_outputs(run: Any, cfg: Any, table: list[dict[str, Any]], chosen: dict[str, Any],
                  ev: dict[str, Any]) -> None:
    """`search.json`/`.csv`, `steer.txt`, `eval.json` (if evaluated), `defense.png`/`.pdf`."""
    from refusalscope.fileio import atomic_write_json

    atomic_write_json(run.file("search.json"), {"rule": cfg.rule, "target": cfg.target,
                                                "split": "direction", "table": table,
                                                "chosen": chosen})
    with open(run.file("search.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)
    run.file("steer.txt").write_text(chosen["steer"] + "\n", encoding="utf-8")
    if ev:
        atomic_write_json(run.file("eval.json"), ev)
    plot_defense(table, chosen["alpha"], ev, run.file("defense.png"), cfg.model)


def plot_defense(table: list[dict[str, Any]], alpha: float, ev: dict[str, Any], png: Any,
                 title: str) -> None:
    """RRR and over-refusal vs alpha (direction split, Wilson CIs); eval points as squares."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from refusalscope.interp.steer_eval import save_rate_figure

    xs = [r["alpha"] for r in table]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label, colour in (("rrr", "RRR (harmful)", "C3"),
                               ("over_refusal", "over-refusal (harmless)", "C0")):
        ys = [r[key] for r in table]
        err = [[max(y - r[f"{key}_ci_low"], 0) for y, r in zip(ys, table, strict=True)],
               [max(r[f"{key}_ci_high"] - y, 0) for y, r in zip(ys, table, strict=True)]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colour,
                    label=f"{label}, direction split")
        side = "harmful" if key == "rrr" else "harmless"
        pts = [(float(a), v[side]) for a, v in ev.items()]
        if pts:
            ax.errorbar([a for a, _ in pts], [p["rate"] for _, p in pts],
                        yerr=[[max(p["rate"] - p["ci"][0], 0) for _, p in pts],
                              [max(p["ci"][1] - p["rate"], 0) for _, p in pts]],
                        fmt="s", mfc="none", capsize=3, color=colour, label=f"{label}, eval")
    ax.axvline(alpha, color="k", ls=":", lw=1, label=f"chosen alpha {alpha:g}")
    save_rate_figure(fig, ax, png, xlabel="addition coefficient alpha (x difference-in-means)",
                     ylabel="refusal rate", title=f"{title}: steering defense after the attack")
