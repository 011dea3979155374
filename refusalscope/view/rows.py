"""One row per response: a generate run's `generations.jsonl` joined with its scorings.

Each row carries the run's model and attack cell (`study.chain`: kind, n_data, steps, seed),
the prompt and response, every scorer's label (the latest `scores*.jsonl` per scorer name;
the run's latest scoring is the *main* one), P(refused) and CE (binary entropy of P(refused),
bits) of the main scorer, and RD (1 - cosine to the baseline's response, from the latest
`drift*.json`). Rows keep `generations.jsonl`'s order sorted by prompt id, not batch order.

Targets: a study folder (its `nodes/*/runs/*` generate runs), a folder of runs, or run folders.
A run's baseline (config `baseline`) is loaded too, so the attacked and baseline responses to
the same prompt can be shown side by side.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import read_jsonl
from refusalscope.paths import runs_dir
from refusalscope.runs import MANIFEST, Run
from refusalscope.scoring.inputs import latest_by_scorer

_NUMBERED = re.compile(r"(?P<stem>[a-z]+)(?:\.(?P<k>\d+))?\.(?P<ext>jsonl|json)")


@dataclass
class ViewData:
    """Everything a page shows: rows, the runs they come from, and a study's report folder."""

    rows: list[dict[str, Any]]
    runs: dict[str, dict[str, Any]]
    scorers: list[str]
    title: str
    study: Path | None = None
    report: Path | None = None  # the latest `reports/<stamp>/` folder with a report.md
    notes: list[str] = field(default_factory=list)


def find_targets(targets: Sequence[str | Path]) -> tuple[list[Path], Path | None]:
    """Generate-run folders behind `targets` and the study folder if one was given."""
    runs: list[Path] = []
    study = None
    for t in targets:
        p = Path(t)
        if not p.exists() and (runs_dir() / p / MANIFEST).is_file():
            p = runs_dir() / p  # a bare run id
        if (p / MANIFEST).is_file():
            runs.append(p)
        elif (p / "nodes").is_dir():
            study = study or p
            runs += sorted(m.parent for m in p.glob("nodes/*/runs/*/" + MANIFEST))
        elif p.is_dir():
            runs += sorted(m.parent for m in p.glob("*/" + MANIFEST))
        else:
            raise UserError(f"not a run, a study or a folder of runs: {t}")
    gen = [r for r in runs if _is_generate(r)]
    if not gen:
        raise UserError("no generate runs found in " + ", ".join(str(t) for t in targets))
    return sorted(set(gen), key=lambda r: r.name), study


def _is_generate(path: Path) -> bool:
    try:
        m = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return m.get("command") == "generate" and (path / "generations.jsonl").is_file()


def latest_files(folder: Path, stem: str) -> list[Path]:
    """`stem.jsonl|json`, `stem.2...`, ... in scoring order (oldest first)."""
    found = []
    for p in folder.glob(f"{stem}*"):
        m = _NUMBERED.fullmatch(p.name)
        if m and m["stem"] == stem:
            found.append((int(m["k"] or 1), p))
    return [p for _, p in sorted(found)]


def _drift(run: Path) -> dict[str, float]:
    files = latest_files(run, "drift")
    if not files:
        return {}
    per = json.loads(files[-1].read_text(encoding="utf-8")).get("per_prompt") or []
    return {str(r["id"]): float(r["drift"]) for r in per if r.get("drift") is not None}


def entropy_bits(p: float | None) -> float | None:
    """Binary entropy of P(refused), bits (None without a probability)."""
    if p is None:
        return None
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def run_info(run: Run) -> dict[str, Any]:
    """A run's model, attack cell and baseline, as the page labels them."""
    from refusalscope.study.chain import attack_parts, kind_of, run_of

    cfg = run.manifest.config
    parts = attack_parts(run)
    attack = kind_of(parts) if parts or not cfg.get("steer") else "steer"
    n_data = next((p.n_data for p in parts if p.n_data is not None), None)
    steps = sum(p.steps for p in parts if p.steps is not None) if parts else None
    seed = parts[-1].seed if parts else None
    cell = attack if attack in ("none", "steer") else (
        f"{attack} n_data={n_data} steps={steps}")
    base = run_of(cfg.get("baseline"), run)
    model = str(run.manifest.model or cfg.get("model") or "?")
    if cfg.get("harmless"):
        cell += " (harmless)"
    return {"id": run.id, "path": str(run.path), "model": model, "attack": attack,
            "n_data": n_data, "steps": steps, "seed": seed, "cell": cell,
            "baseline": base.id if base is not None else None,
            "baseline_path": str(base.path) if base is not None else None,
            "status": run.manifest.status}


def run_rows(path: Path, info: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of one generate run (see the module docstring) and its scorer names."""
    scorings, main = latest_by_scorer(path)
    drift = _drift(path)
    gens = sorted(read_jsonl(path / "generations.jsonl"), key=lambda r: str(r.get("id")))
    rows = []
    for g in gens:
        pid = str(g.get("id"))
        labels = {}
        for name, by_id in scorings.items():
            s = by_id.get(pid)
            if s is not None:
                labels[name] = {"refused": bool(s.get("refused")), "outcome": s.get("outcome"),
                                "p": s.get("p_refused")}
        m = scorings.get(main or "", {}).get(pid, {})
        p = m.get("p_refused")
        outs = {v["outcome"] if v["outcome"] else str(v["refused"]) for v in labels.values()}
        rows.append({
            "run": info["id"], "id": pid, "model": info["model"], "attack": info["attack"],
            "cell": info["cell"], "seed": info["seed"], "label": g.get("label", "harmful"),
            "prompt": str(g.get("prompt", "")), "response": str(g.get("response", "")),
            "scores": labels, "main": main if m else None,
            "outcome": m.get("outcome") or (("refused" if m.get("refused") else "complied")
                                            if m else None),
            "p": p, "ce": m.get("entropy", entropy_bits(p)) if p is not None else None,
            "rd": drift.get(pid), "agree": None if len(labels) < 2 else len(outs) == 1})
    return rows, list(scorings)


def collect(targets: Sequence[str | Path], *, max_rows: int | None = None) -> ViewData:
    """Rows of every generate run behind `targets`, their baselines included.

    Example:
        data = collect(["artifacts/studies/lora-grid"])
        len(data.rows), data.scorers
    """
    paths, study = find_targets(targets)
    runs: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    scorers: list[str] = []
    queue = list(paths)
    while queue:
        path = queue.pop(0)
        run = Run.open(path)
        if run.id in runs:
            continue
        info = run_info(run)
        runs[run.id] = info
        got, names = run_rows(path, info)
        rows += got
        scorers += [n for n in names if n not in scorers]
        if info["baseline_path"] and info["baseline"] not in runs:
            queue.append(Path(info["baseline_path"]))
    notes = []
    if max_rows is not None and len(rows) > max_rows:
        notes.append(f"showing the first {max_rows} of {len(rows)} rows (--max-rows)")
        rows = rows[:max_rows]
    title = f"study {study.name}" if study else ", ".join(sorted(runs))[:120]
    return ViewData(rows, runs, scorers, title, study, _latest_report(study), notes)


def _latest_report(study: Path | None) -> Path | None:
    if study is None:
        return None
    found = sorted(p.parent for p in study.glob("reports/*/report.md"))
    return found[-1] if found else None


def cells(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, cell, scorer) over harmful prompts: n, RRR, complied and degenerate shares,
    mean CE (bits) and mean RD, for the heatmap and the cell table."""
    acc: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["label"] != "harmful":
            continue
        for name, lab in r["scores"].items():
            acc.setdefault((r["model"], r["cell"], name), []).append({**lab, "rd": r["rd"],
                                                                      "main": r["main"]})
    out = []
    for (model, cell, scorer), labs in sorted(acc.items()):
        n = len(labs)
        ps = [entropy_bits(x["p"]) for x in labs if x["p"] is not None]
        rds = [x["rd"] for x in labs if x["rd"] is not None]
        out.append({"model": model, "cell": cell, "scorer": scorer, "n": n,
                    "rrr": sum(x["refused"] for x in labs) / n,
                    "complied": sum(x["outcome"] == "complied" for x in labs) / n,
                    "degenerate": sum(x["outcome"] == "degenerate" for x in labs) / n,
                    "ce": sum(ps) / len(ps) if ps else None,
                    "rd": sum(rds) / len(rds) if rds else None})
    return out
