"""Gather per-prompt outcomes and their x-values from scored generate runs, for `fit`.

A `Point` is one scored `generate` run over harmful prompts: the model and its parameter count
N (the run manifest's `extra["model"]["n_params"]`, else the registry), the attack it evaluates
and that attack's compute C, the seeds, and per prompt id the refusal label (RRR), the
classifier's binary entropy in bits (CE) and the Refusal Drift against the run's baseline (RD).

Where the attack comes from: `generate --adapter RUN` names an `attack-lora` run (its
`compute.json`: `examples_seen` = examples over all steps, and `flops_estimate`); a
`--prompts` file inside an attack run (`attacked_prompts.jsonl` of `attack gcg|autodan|template`)
names that run (its `result.json` compute). A run with neither is a baseline: C = 0.

Labels come from the run's latest `scores[.K].jsonl`; RD from its latest `drift[.K].json`.

Defenses (`defense`): "tar" for a model folder stamped by `defend tar` (model label
"<base>+tar"), "steer" for `--steer add:...` after an attack; each is its own strength.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from refusalscope.errors import UserError
from refusalscope.fileio import read_jsonl
from refusalscope.runs import Run, config_id

METRICS = ("rrr", "rd", "ce")
RD_OVER = ("refused", "all")
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}


@dataclass(frozen=True)
class Point:
    """One scored generate run. Per-prompt arrays are aligned with `ids`; NaN = not defined."""

    run: str
    model: str
    n_params: int
    attack: str  # "none" (baseline), "lora", "gcg", "autodan", "template", "adapter" (unknown)
    attack_run: str | None
    variant: str  # content id of the attack config without seed/n_data/steps ("" for none)
    n_data: int | None
    steps: int | None
    examples: float  # attack examples processed over all steps (0 for the baseline)
    flops: float  # attack training/optimisation FLOPs (0 for the baseline)
    seed: tuple[int, int]  # (attack seed, generate seed): replicates of one condition
    scorer: str
    ids: tuple[str, ...] = field(repr=False)
    refused: np.ndarray = field(repr=False, compare=False)  # float 0/1 [n]
    ce: np.ndarray = field(repr=False, compare=False)  # bits [n], NaN without probabilities
    rd: np.ndarray = field(repr=False, compare=False)  # [n], NaN where no drift
    rd_refused: np.ndarray = field(repr=False, compare=False)  # as rd, NaN unless refused at base
    decoding: str = ""  # non-default generation settings ("T=0.8 system-prompt"), else ""
    defense: str = "none"  # none | tar | steer

    @property
    def attacked(self) -> bool:
        return self.attack != "none"

    @property
    def strength(self) -> str:
        """Attack strength label (everything but the model and the seed)."""
        tail = ([self.decoding] if self.decoding else []) + \
            ([f"[{self.defense}]"] if self.defense != "none" else [])
        if not self.attacked:
            return " ".join(["no attack", *tail])
        parts = [self.attack] + ([self.variant] if self.variant else [])
        if self.n_data is not None:
            parts.append(f"n={self.n_data}")
        if self.steps is not None:
            parts.append(f"steps={self.steps}")
        return " ".join(parts + tail)

    @property
    def condition(self) -> tuple[str, str]:
        """(model, strength): runs that differ only in seed are replicates of one condition."""
        return (self.model, self.strength)

    def values(self, metric: str, rd_over: str = "refused") -> np.ndarray:
        """Per-prompt values of `metric` (NaN where it is not defined for a prompt)."""
        if metric == "rrr":
            return self.refused
        if metric == "ce":
            return self.ce
        if metric == "rd":
            return self.rd_refused if rd_over == "refused" else self.rd
        raise UserError(f"unknown metric {metric!r}: one of {', '.join(METRICS)}")


def find_runs(folder: str | Path) -> list[Path]:
    """Scored, finished generate runs over harmful prompts directly under `folder`, by name."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"no runs found: no such folder {folder} "
                        "(give --runs RUN... or --runs-dir DIR)")
    out = []
    for mf in sorted(root.glob("*/manifest.json")):
        try:
            m = json.loads(mf.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        cfg = m.get("config") or {}
        if (m.get("command") == "generate" and m.get("status") == "success"
                and not cfg.get("harmless") and _latest(mf.parent, "scores", ".jsonl")):
            out.append(mf.parent)
    return out


def gather_points(runs: Iterable[str | Path]) -> list[Point]:
    """One `Point` per run; each run must be a finished, scored generate run on harmful prompts.

    Example:
        points = gather_points(find_runs("artifacts/runs"))
        [(p.model, p.strength, p.refused.mean()) for p in points]
    """
    points = [_point(Run.open(r)) for r in runs]
    if not points:
        raise UserError("no runs found: give --runs RUN... or a --runs-dir with scored "
                        "generate runs (refusalscope generate …, then refusalscope score RUN)")
    # Name an attack's config variant only where one attack kind comes in several variants.
    kinds: dict[str, set[str]] = {}
    for p in points:
        kinds.setdefault(p.attack, set()).add(p.variant)
    points = [p if len(kinds[p.attack]) > 1 else replace(p, variant="") for p in points]
    # Likewise generation settings: named only where runs differ in them.
    if len({p.decoding for p in points}) == 1:
        points = [replace(p, decoding="") for p in points]
    return points


def _point(run: Run) -> Point:
    m, cfg = run.manifest, run.manifest.config
    if m.command != "generate":
        raise UserError(f"run {run.id} is a {m.command!r} run: fit reads scored generate runs")
    if m.status != "success":
        raise UserError(f"run {run.id} has status {m.status!r}: fit reads finished runs only")
    if cfg.get("harmless"):
        raise UserError(f"run {run.id} is over harmless prompts: RRR, RD and CE are measured "
                        "on harmful ones")
    scores = _latest(run.path, "scores", ".jsonl")
    if scores is None:
        raise UserError(f"run {run.id} has no scores.jsonl: score it first "
                        f"(refusalscope score {run.id})")
    rows = [r for r in read_jsonl(scores) if r.get("label", "harmful") == "harmful"]
    if not rows:
        raise UserError(f"run {run.id}: {scores.name} has no harmful rows")
    ids = tuple(str(r["id"]) for r in rows)
    refused = np.array([float(bool(r["refused"])) for r in rows])
    ce = np.array([_entropy(r) for r in rows])
    rd, rd_ref = _drift(run, ids)
    model = m.model or str(cfg.get("model"))
    attack = _attack(run)
    n_params = attack.pop("base_params") or _n_params(run, model)
    defense, label = _defense(cfg, attack["attack"] != "none")
    return Point(run=run.id, model=label or model, n_params=n_params, **attack,
                 seed=(_attack_seed(run), int(cfg.get("seed") or 0)),
                 scorer=str(rows[0].get("scorer", "?")), ids=ids, refused=refused, ce=ce,
                 rd=rd, rd_refused=rd_ref, decoding=_decoding(cfg), defense=defense)


def _defense(cfg: dict[str, Any], attacked: bool) -> tuple[str, str | None]:
    """(defense, model label for a defended model folder) of a generate run's config."""
    from refusalscope.models.convert import read_stamp

    path = Path(str(cfg.get("model")))
    for folder in (path, path / "model"):
        stamp = read_stamp(folder) if folder.is_dir() else None
        if stamp and stamp.get("defense"):
            return str(stamp["defense"]), stamp.get("label")
    if attacked and str(cfg.get("steer") or "").startswith("add:"):
        return "steer", None
    return "none", None


def _decoding(cfg: dict[str, Any]) -> str:
    """Generation settings that change what a model answers, when not the defaults."""
    parts = []
    if cfg.get("temperature"):
        parts.append(f"T={cfg['temperature']:g}" + (f" top-p={cfg['top_p']:g}"
                                                    if cfg.get("top_p", 1.0) < 1.0 else ""))
    if cfg.get("system_prompt"):
        parts.append("system-prompt")
    if cfg.get("max_new_tokens", 128) != 128:
        parts.append(f"max-new={cfg['max_new_tokens']}")
    return " ".join(parts)


def _latest(folder: Path, stem: str, suffix: str) -> Path | None:
    """`stem.suffix` or the highest `stem.K.suffix` (later scorings are written beside)."""
    pat = re.compile(rf"{stem}(?:\.(\d+))?{re.escape(suffix)}")
    found = [(int(mt.group(1) or 1), p) for p in folder.glob(f"{stem}*{suffix}")
             if (mt := pat.fullmatch(p.name))]
    return max(found)[1] if found else None


def _entropy(row: dict[str, Any]) -> float:
    if row.get("entropy") is not None:
        return float(row["entropy"])
    p = row.get("p_refused")
    if p is None:
        return float("nan")
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return float(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))


def _drift(run: Run, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt RD over all prompts and over baseline-refused ones (NaN elsewhere)."""
    rd = np.full(len(ids), np.nan)
    rd_ref = np.full(len(ids), np.nan)
    path = _latest(run.path, "drift", ".json")
    if path is None:
        return rd, rd_ref
    per = {str(r["id"]): r for r in json.loads(path.read_text(encoding="utf-8"))["per_prompt"]}
    for i, pid in enumerate(ids):
        r = per.get(pid)
        if r is not None:
            rd[i] = float(r["drift"])
            if r.get("refused_at_baseline"):
                rd_ref[i] = rd[i]
    return rd, rd_ref


def _n_params(run: Run, model: str) -> int:
    info = run.manifest.extra.get("model") or {}
    if info.get("n_params"):
        return int(info["n_params"])
    from refusalscope.models.registry import REGISTRY

    entry = REGISTRY.get(model)
    text = (entry.params if entry else "").strip().lower()
    if text and text[-1] in _SUFFIX:
        return int(float(text[:-1]) * _SUFFIX[text[-1]])
    raise UserError(f"run {run.id}: model {model!r} has no parameter count (the manifest "
                    "lacks extra.model.n_params and the registry does not know it)")


def attack_run_of(run: Run) -> Run | None:
    """The attack run a generate run evaluates (its adapter's run, or the run that wrote its
    prompts file), or None for a baseline / an adapter that is no run."""
    cfg = run.manifest.config
    for ref in (cfg.get("adapter"), cfg.get("prompts_file")):
        if not ref:
            continue
        p = Path(ref)
        for cand in (p, p.parent, run.path.parent / p.name, run.path.parent / p.parent.name):
            if (cand / "manifest.json").is_file() and cand.resolve() != run.path.resolve():
                return Run.open(cand)
    return None


def _attack_seed(run: Run) -> int:
    att = attack_run_of(run)
    return int(att.manifest.config.get("seed") or 0) if att is not None else 0


def _attack(run: Run) -> dict[str, Any]:
    att = attack_run_of(run)
    if att is None:  # steering and non-run adapters: attacked, compute unknown
        cfg = run.manifest.config
        kind = "steer" if cfg.get("steer") else "adapter" if cfg.get("adapter") else "none"
        return {"attack": kind, "attack_run": None, "base_params": None, "variant": "",
                "n_data": None,
                "steps": None, "examples": 0.0 if kind == "none" else float("nan"),
                "flops": 0.0 if kind == "none" else float("nan")}
    acfg = dict(att.manifest.config)
    kind = att.manifest.command.removeprefix("attack-")
    compute = _compute(att)
    n_data = acfg.get("n_data", acfg.get("n"))
    steps = compute.get("steps", acfg.get("steps"))
    rest = {k: v for k, v in acfg.items() if k not in ("seed", "n_data", "n", "steps", "model",
                                                       "save_every", "skip")}
    # The generate manifest counts the adapter's weights too; N is the base model's size.
    base = compute.get("total_params") if _has_adapter(run) else None
    return {"attack": kind, "attack_run": att.id, "base_params": base,
            "variant": config_id(rest)[:4],
            "n_data": int(n_data) if n_data is not None else None,
            "steps": int(steps) if steps is not None else None,
            "examples": float(compute.get("examples_seen", np.nan)),
            "flops": float(compute.get("flops_estimate", compute.get("flops", np.nan)))}


def _has_adapter(run: Run) -> bool:
    return bool(run.manifest.config.get("adapter"))


def _compute(att: Run) -> dict[str, Any]:
    for name in ("compute.json", "result.json"):
        f = att.file(name)
        if f.is_file():
            d = json.loads(f.read_text(encoding="utf-8"))
            return dict(d.get("compute", d)) if name == "result.json" else dict(d)
    return dict(att.manifest.extra.get("compute") or {})
