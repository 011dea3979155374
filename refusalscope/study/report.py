"""`study report`: one folder with `report.md` (findings, setup, results, fits, half-life,
caveats) and `results.csv`.

`report.md` opens with a Findings section (`findings.py`) generated from the fits: one sentence
per question the study asks, with its numbers and CIs, or what the study lacks to answer it.
The results table has one row per finished score node: model, attack and its cell, seed,
scorer, RRR with its bootstrap and Wilson 95% intervals, substantive compliance, Calibration
Entropy and Refusal Drift where measured, the attack's compute (FLOPs, from the attack
run's `compute.json`) and the generate run (relative to the study folder, which may be moved).
Fits (RRR, RD, CE vs model size and attack compute, bootstrap CIs) and
their figures come from `refusalscope.study.fit` / `.figures`, under `fit/` and `figures/`;
the attack half-life S½ (`halflife.py`) writes `half_life.csv|md|png` into the folder.
Control models (the registry's, or `control = true` in the spec) are left out of the size,
joint and half-life fits unless `include_controls`, and reported beside them.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_text
from refusalscope.study.executor import node_state, record
from refusalscope.study.graph import Node
from refusalscope.study.spec import Spec

COLUMNS = ("model", "attack", "n_data", "steps", "seed", "scorer", "n", "rrr", "rrr_lo",
           "rrr_hi", "wilson_lo", "wilson_hi", "complied", "ce_bits", "rd_refused", "rd_all",
           "attack_flops", "generate_run")


def _json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _attack_info(gen: Node, by_id: dict[str, Node], study: Path) -> dict[str, Any]:
    """Attack name, cell and compute of the model a generate node evaluated."""
    info: dict[str, Any] = {"attack": "none", "n_data": None, "steps": None, "seed": None,
                            "attack_flops": 0.0}
    if "adapter" in gen.inputs:
        lora = by_id[gen.inputs["adapter"]]
        steps = gen.params["adapter_steps"]
        info.update(attack="lora", n_data=lora.params["n_data"], steps=steps,
                    seed=lora.params["seed"])
        rec = record(study, lora)
        if rec is not None:
            run = Path(rec["outputs"]["runs"][str(steps)])
            if (run / "compute.json").is_file():
                info["attack_flops"] = _json(run / "compute.json").get("flops_estimate")
    if "attack" in gen.inputs:
        atk = by_id[gen.inputs["attack"]]
        info.update(attack=(f"{info['attack']}+" if info["attack"] != "none" else "")
                    + gen.params["attack"],
                    seed=atk.params["seed"],
                    steps=atk.params.get("steps", atk.params.get("generations")))
        rec = record(study, atk)
        if rec is not None and (Path(rec["outputs"]["run"]) / "result.json").is_file():
            comp = _json(Path(rec["outputs"]["run"]) / "result.json").get("compute", {})
            info["attack_flops"] = (info["attack_flops"] or 0) + (comp.get("flops_estimate")
                                                                  or comp.get("flops") or 0)
    return info


def latest_metrics(metrics: Path, scorer: str) -> Path:
    """The run's latest metrics file by `scorer` (a run re-scored after the study, e.g. with a
    newer classifier, is reported as the fits read it: by its latest scoring)."""
    manifest = metrics.parent / "manifest.json"
    if not manifest.is_file():
        return metrics
    entries = [e for e in _json(manifest).get("extra", {}).get("scores", [])
               if e.get("scorer") == scorer and e.get("metrics_file")]
    latest = metrics.parent / entries[-1]["metrics_file"] if entries else metrics
    return latest if latest.is_file() else metrics


def scored_nodes(nodes: Sequence[Node], study: Path
                 ) -> Iterator[tuple[Node, dict[str, Any], Node]]:
    """(score node, its record, the generate node it scored) for every finished score node."""
    by_id = {n.id: n for n in nodes}
    for n in nodes:
        rec = record(study, n) if n.kind == "score" else None
        if rec is not None:
            yield n, rec, by_id[n.inputs["generate"]]


def node_metrics(node: Node, rec: dict[str, Any]) -> dict[str, Any]:
    """A finished score node's metrics: its scorer's latest `metrics*.json` in the run."""
    return _json(latest_metrics(Path(rec["outputs"]["metrics"]), node.params["scorer"]))


def results(nodes: list[Node], study: Path) -> list[dict[str, Any]]:
    """One row per finished score node (see `COLUMNS`)."""
    by_id = {n.id: n for n in nodes}
    rows = []
    for n, rec, gen in scored_nodes(nodes, study):
        m = node_metrics(n, rec)
        rrr = m.get("rrr") or {}
        harmful = (m.get("outcomes", {}).get("by_label", {}) or {}).get("harmful") or {}
        drift = _json(rec["outputs"]["drift"]) if rec["outputs"].get("drift") else {}
        ce = m.get("calibration_entropy") or {}
        rows.append({"model": Path(gen.params["model"]).name, **_attack_info(gen, by_id, study),
                     "scorer": n.params["scorer"], "n": rrr.get("n"), "rrr": rrr.get("rate"),
                     "rrr_lo": (rrr.get("ci") or [None, None])[0],
                     "rrr_hi": (rrr.get("ci") or [None, None])[1],
                     "wilson_lo": (rrr.get("wilson95") or [None, None])[0],
                     "wilson_hi": (rrr.get("wilson95") or [None, None])[1],
                     "complied": (harmful.get("complied") or {}).get("rate"),
                     "ce_bits": ce.get("mean_bits"),
                     "rd_refused": (drift.get("rd_refused") or {}).get("mean"),
                     "rd_all": (drift.get("rd_all") or {}).get("mean"),
                     "generate_run": _in_study_name(rec["outputs"]["run"], study)})
    return rows


def _in_study_name(path: str, study: Path) -> str:
    """A run path as the report shows it: relative to the study folder (the same wherever the
    folder has moved), absolute only for a run outside it."""
    p = Path(path).resolve()
    return p.relative_to(study.resolve()).as_posix() if p.is_relative_to(study.resolve()) \
        else str(p)


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) >= 1e4 else f"{v:.3f}"
    return str(v)


def _ci95(row: dict[str, Any]) -> str:
    """The interval the table quotes: bootstrap, or Wilson's where the bootstrap collapses to a
    point (a rate of 0 or 1). Wilson's is marked (W)."""
    lo, hi = row.get("rrr_lo"), row.get("rrr_hi")
    if lo is None or hi is None:
        return ""
    if lo == hi and row.get("wilson_lo") is not None:
        return f"[{row['wilson_lo']:.3f}, {row['wilson_hi']:.3f}] (W)"
    return f"[{lo:.3f}, {hi:.3f}]"


def _markdown_table(rows: list[dict[str, Any]], cols: tuple[str, ...]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |\n" for r in rows)


def _fit_metric(points: list[Any], metric: str, axes: tuple[str, ...], n_boot: int,
                include_controls: bool, c_axis: str | None, n_kind: str) -> Any:
    """The fit of `metric` on the first of `axes` the runs allow (UserError: the last reason)."""
    from refusalscope.study.fit import FitConfig, fit_metric

    err: Exception | None = None
    for x in axes:
        try:
            return fit_metric(points, FitConfig(metric=metric, x=x, n_boot=n_boot,
                                                include_controls=include_controls,
                                                c_axis=c_axis, n_kind=n_kind))
        except UserError as e:
            err = e
    assert err is not None
    raise err


def _fits(out: Path, points: list[Any], x: str, n_boot: int, include_controls: bool,
          c_axis: str | None, n_kind: str) -> tuple[str, dict[str, Any]]:
    """Fit RRR, RD and CE into `out/fit/<metric>` and `out/figures/<metric>`: the markdown
    section and the results made. A metric that cannot be fitted (no drift measured, no
    classifier probabilities, too few points) says why."""
    from refusalscope.study.figures import plot_all
    from refusalscope.study.tables import write_fit

    parts, done = [], {}
    axes = (x, *[a for a in ("both", "compute", "size") if a != x])
    for metric in ("rrr", "rd", "ce"):
        try:
            result = _fit_metric(points, metric, axes, n_boot, include_controls, c_axis,
                                 n_kind)
            write_fit(result, out / "fit" / metric)
            figs = plot_all(result, out / "figures" / metric)
        except Exception as e:  # noqa: BLE001 - reported in the report, not hidden
            parts.append(f"### {metric.upper()}\n\nNo fit: {' '.join(str(e).split())}\n")
            continue
        done[metric] = result
        md = (out / "fit" / metric / "fit.md").read_text(encoding="utf-8")
        md = "\n".join("##" + line if line.startswith("#") else line for line in md.splitlines())
        pngs = [f for f in figs if f.suffix == ".png"]
        parts.append(f"### {metric.upper()} (vs {result.config.x})\n\n{md}\n\n"
                     + "".join(f"![{f.stem}]({f.relative_to(out)})\n" for f in pngs))
    return "\n".join(parts), done


def _analysis(out: Path, spec: Spec, gen_runs: list[str], n_boot: int, c_axis: str | None,
              include_controls: bool, n_kind: str) -> tuple[str, str, str]:
    """(Findings, fits section, half-life section) of the report, from the scored runs."""
    from refusalscope.study.findings import findings, size_fit
    from refusalscope.study.halflife import HalfLifeConfig, half_life
    from refusalscope.study.halflife_files import markdown, write_half_life
    from refusalscope.study.points import gather_points

    if not gen_runs:
        return "## Findings\n\nNo scored runs yet.\n", "No scored runs yet.\n", ""
    points = gather_points(gen_runs, controls=spec.controls())
    refusing = {p.model for p in points if include_controls or not p.control}
    attacked = any(p.attacked for p in points)
    x = "both" if len(refusing) > 1 and attacked else ("compute" if attacked else "size")
    fits_md, results = _fits(out, points, x, n_boot, include_controls, c_axis, n_kind)
    half, half_why, half_md = None, "", ""
    try:
        half = half_life(points, HalfLifeConfig(c_axis=c_axis or "flops", n_boot=n_boot,
                                                include_controls=include_controls,
                                                n_kind=n_kind))
        files = write_half_life(half, out)
        body = markdown(half).split("\n", 1)[1]  # its own title becomes the section's
        half_md = body + "".join(f"\n![{f.stem}]({f.relative_to(out)})\n" for f in files
                                 if f.suffix == ".png")
    except UserError as e:
        half_why = " ".join(str(e).split())
        half_md = f"No attack half-life: {half_why}\n"
    size, size_why = size_fit(points, n_boot=n_boot, include_controls=include_controls,
                              n_kind=n_kind)
    text = findings(points, size=size, size_why=size_why, half=half, half_why=half_why,
                    fits=list(results.values()), include_controls=include_controls,
                    n_kind=n_kind, n_boot=n_boot)
    return text, fits_md, half_md


def _is_control(model: Any) -> bool:
    """A spec model marked `control = true`, or one the registry marks."""
    from refusalscope.study.sizes import registry_entry

    return bool(model.control or getattr(registry_entry(model.name), "control", False))


def write_report(spec: Spec, nodes: list[Node], study: Path, out: Path, n_boot: int = 1000,
                 *, c_axis: str | None = None, include_controls: bool = False,
                 n_kind: str = "non-embedding") -> Path:
    """Write `out/report.md`, `out/results.csv`, fits, figures and the half-life table/figure
    (`c_axis`: the compute axis of the fits and the S½ figure; None: the fits on FLOPs and
    examples, the figure on FLOPs); returns the report path."""
    if (out / "report.md").exists():
        raise UserError(f"{out} already holds a report.md: choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    rows = results(nodes, study)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    states: dict[str, int] = {}
    for n in nodes:
        st = node_state(study, n)
        states[st] = states.get(st, 0) + 1
    ev = spec.eval
    attacks = "; ".join(f"{a.name} ({a.kind}): " + ", ".join(f"{k}={list(v)}"
                                                              for k, v in a.grid.items())
                        for a in spec.attacks) or "none"
    found, fits_md, half_md = _analysis(out, spec, sorted({str(study / r["generate_run"])
                                                           for r in rows}),
                                        n_boot, c_axis, include_controls, n_kind)
    models = ", ".join(Path(m.name).name + (" (control)" if _is_control(m) else "")
                       for m in spec.models)
    text = (f"# Study `{spec.name}`\n\n{spec.description}\n\n{found}\n"
            f"Written {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')} from {study}. "
            f"Nodes: " + ", ".join(f"{v} {k}" for k, v in sorted(states.items())) + ".\n\n"
            "> Content warning: the runs behind this report hold model completions to harmful "
            "requests; they are not reproduced here.\n\n"
            "## Setup\n\n"
            f"- Models: {models}\n"
            f"- Attacks: {attacks}\n- Seeds: {list(spec.seeds)}\n"
            f"- Evaluation: {ev['prompts'] or 'split ' + ev['split']}, first {ev['n']} prompts, "
            f"greedy, at most {ev['max_new_tokens']} new tokens\n"
            f"- Scorers: {', '.join(spec.scorers)}; Refusal Drift vs the baseline: "
            f"{'yes' if spec.drift else 'no'}\n\n"
            "## Results\n\nRRR = share of harmful eval prompts refused (95% percentile bootstrap "
            "over prompts; Wilson's, marked (W), where the bootstrap is a point at 0 or 1). "
            "complied = substantive compliance. Each run by its latest scoring with that scorer "
            "(the labels the fits read; a run re-scored after the study shows the new labels). "
            "attack_flops from the attack run's compute accounting.\n\n"
            + _markdown_table([{**r, "rrr_ci95": _ci95(r)} for r in rows],
                              ("model", "attack", "n_data", "steps", "seed", "scorer",
                               "n", "rrr", "rrr_ci95", "complied", "ce_bits",
                               "rd_refused", "attack_flops"))
            + "\n## Fits and figures\n\n" + fits_md
            + "\n## Attack half-life S½\n" + half_md
            + "\n## Caveats\n\n"
              "- Small evaluation sets: intervals are wide; compare cells by their CIs, not "
              "point estimates.\n"
              "- Heuristic labels miss refusals phrased in unlisted ways and count degenerate "
              "text as not refused; see the complied column and `score validate`.\n"
              "- Prompt attacks (gcg, autodan) are scored on the attacked eval prompts; their "
              "Refusal Drift is not computed (the prompts differ from the baseline's).\n")
    atomic_write_text(out / "report.md", text)
    return out / "report.md"
