"""Gather per-prompt outcomes and their x-values from scored generate runs, for `fit`.

A `Point` is one scored `generate` run over harmful prompts: the model and its sizes (N as
loaded, released and non-embedding: `sizes.py`), whether it is a control, the attack it
evaluates with that attack's compute C in examples, steps and FLOPs (`chain.py`: a prompt
attack after a LoRA cell is the chain "lora+gcg", its compute the parts' sum, the parts kept),
the seeds, and per prompt id the refusal label (RRR), the classifier's binary entropy in bits
(CE) and the Refusal Drift against the run's baseline (RD). A run with no attack is a
baseline: C = 0.

Labels come from the run's latest `scores[.K].jsonl`; RD from its latest `drift[.K].json`.

Defenses (`defense`): a weights defense's name for a model folder it stamped (`defend tar`:
"tar", model label "<base>+tar"); a runtime defense's name as the generate run records it
(`GenerateConfig.defense`, set by a study for any registered runtime defense: "steer", ...);
"steer" for `--steer add:...` after an attack in a run that records none (`generate --steer`,
runs made before the field). Each is its own strength.
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
from refusalscope.runs import Run
from refusalscope.study.chain import AttackPart, attack_parts, kind_of, total
from refusalscope.study.sizes import N_KINDS, model_size

METRICS = ("rrr", "rd", "ce")
RD_OVER = ("refused", "all")
# Units of attack compute a point carries (`Point.compute`); the last is FLOPs / pretraining FLOPs.
C_UNITS = ("examples", "steps", "flops", "pretrain-fraction")


@dataclass(frozen=True)
class Point:
    """One scored generate run. Per-prompt arrays are aligned with `ids`; NaN = not defined."""

    run: str
    model: str
    n_params: int  # parameters as loaded (a GGUF conversion's untied head counted)
    # "none" (baseline), "lora", "gcg", "autodan", "template", a chain "lora+gcg", "steer" or
    # "adapter" (an attack whose run is unknown)
    attack: str
    attack_run: str | None  # the last attack run of the chain
    variant: str  # content id of the attack config without seed/n_data/steps ("" for none)
    n_data: int | None  # LoRA pairs (the chain's LoRA part), or a prompt attack's prompts
    steps: int | None  # summed over a chain's parts (None for the baseline: `compute` gives 0)
    examples: float  # attack examples processed over all steps, summed (0 for the baseline)
    flops: float  # attack training/optimisation FLOPs, summed (0 for the baseline)
    seed: tuple[int, int]  # (attack seed, generate seed): replicates of one condition
    scorer: str
    ids: tuple[str, ...] = field(repr=False)
    refused: np.ndarray = field(repr=False, compare=False)  # float 0/1 [n]
    ce: np.ndarray = field(repr=False, compare=False)  # bits [n], NaN without probabilities
    rd: np.ndarray = field(repr=False, compare=False)  # [n], NaN where no drift
    rd_refused: np.ndarray = field(repr=False, compare=False)  # as rd, NaN unless refused at base
    decoding: str = ""  # non-default generation settings ("T=0.8 system-prompt"), else ""
    defense: str = "none"  # none, or a defense's name (tar, steer, any registered one)
    n_released: int = 0  # released parameter count, tied embeddings once (0: = n_params)
    n_non_embedding: int = 0  # without input embedding and LM head (0: = n_params)
    control: bool = False  # a model that never refuses: left out of size fits by default
    pretrain_flops: float = float("nan")  # 6 * n_released * pretraining tokens, NaN if unknown
    parts: tuple[AttackPart, ...] = ()  # the attacks of the chain, in order (compute per part)

    def __post_init__(self) -> None:
        for name in ("n_released", "n_non_embedding"):
            if not getattr(self, name):
                object.__setattr__(self, name, self.n_params)

    @property
    def attacked(self) -> bool:
        return self.attack != "none"

    def n(self, kind: str = "non-embedding") -> int:
        """Model size N of `kind`: "non-embedding" or "total" (the released count)."""
        if kind == "non-embedding":
            return self.n_non_embedding
        if kind == "total":
            return self.n_released
        raise UserError(f"unknown --n-kind {kind!r}: one of {', '.join(N_KINDS)}")

    def compute(self, unit: str) -> float:
        """Attack compute in `unit` (one of `C_UNITS`): 0 for the baseline, NaN if unknown."""
        if unit == "pretrain-fraction":
            return self.flops / self.pretrain_flops if self.flops else 0.0
        if unit == "steps":
            if not self.attacked:
                return 0.0
            return float(self.steps) if self.steps is not None else float("nan")
        if unit in ("examples", "flops"):
            return float(getattr(self, unit))
        raise UserError(f"unknown compute unit {unit!r}: one of {', '.join(C_UNITS)}")

    @property
    def steps_label(self) -> str:
        """Steps as a label: "20", or per part of a chain, "64+20"."""
        if len(self.parts) > 1:
            return "+".join("?" if p.steps is None else str(p.steps) for p in self.parts)
        return "" if self.steps is None else str(self.steps)

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
        if self.steps_label:
            parts.append(f"steps={self.steps_label}")
        return " ".join(parts + tail)

    @property
    def family(self) -> str:
        """The strength without its grid cell (n_data, steps): attack kind, variant, decoding
        and defense, e.g. "lora [steer]"; what a figure draws as one series or panel."""
        tail = ([self.decoding] if self.decoding else []) + \
            ([f"[{self.defense}]"] if self.defense != "none" else [])
        head = [self.attack, self.variant] if self.attacked else ["no attack"]
        return " ".join([h for h in head if h] + tail)

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
    """Scored, finished generate runs over harmful prompts anywhere below `folder` (a runs
    folder, a study folder, any tree of them), by path."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"no runs found: no such folder {folder} "
                        "(give --runs RUN... or --runs-dir DIR)")
    out = []
    for mf in sorted(root.rglob("manifest.json")):
        try:
            m = json.loads(mf.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        cfg = m.get("config") or {}
        if (m.get("command") == "generate" and m.get("status") == "success"
                and not cfg.get("harmless") and _latest(mf.parent, "scores", ".jsonl")):
            out.append(mf.parent)
    return out


def gather_points(runs: Iterable[str | Path], controls: Iterable[str] = ()) -> list[Point]:
    """One `Point` per run; each run must be a finished, scored generate run on harmful prompts.

    `controls`: model names (registry names, folders or their last part) to mark as controls
    beside the registry's own (a spec's `control = true`).

    Example:
        points = gather_points(find_runs("artifacts/runs"))
        [(p.model, p.strength, p.refused.mean()) for p in points]
    """
    marked = frozenset(controls)
    points = [_point(Run.open(r), marked) for r in runs]
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
    return _one_size_per_model(points)


def _one_size_per_model(points: list[Point]) -> list[Point]:
    """Every run of one model gets the sizes of its runs without an adapter (a manifest written
    with an adapter loaded may count the adapter's weights): one model, one N."""
    ref: dict[str, Point] = {}
    for p in points:
        if p.model not in ref or (_adapted(ref[p.model]) and not _adapted(p)):
            ref[p.model] = p
    return [replace(p, n_released=r.n_released, n_non_embedding=r.n_non_embedding,
                    pretrain_flops=r.pretrain_flops, control=r.control)
            if (r := ref[p.model]) is not p else p for p in points]


def _adapted(p: Point) -> bool:
    """Generated from changed weights (a LoRA cell, an adapter folder, any weights attack)."""
    from refusalscope.attacks.base import WEIGHTS
    from refusalscope.attacks.registry import REGISTRY

    return any(part.kind == "adapter" or getattr(REGISTRY.get(part.kind), "kind", None) == WEIGHTS
               for part in p.parts)


def _point(run: Run, controls: frozenset[str] = frozenset()) -> Point:
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
    defense, label = _defense(cfg, attack["attack"] != "none", run.path)
    # The generate manifest counts an adapter's weights too; N is the base model's size.
    base = next((p.base_params for p in attack["parts"] if p.base_params), None)
    size = model_size(run.manifest.extra.get("model") or {}, (model, label), run_id=run.id,
                      base_params=base, controls=controls)
    return Point(run=run.id, model=label or model, n_params=size.n_params, **attack,
                 scorer=str(rows[0].get("scorer", "?")), ids=ids, refused=refused, ce=ce,
                 rd=rd, rd_refused=rd_ref, decoding=_decoding(cfg), defense=defense,
                 n_released=size.n_released, n_non_embedding=size.n_non_embedding,
                 control=size.control, pretrain_flops=size.pretrain_flops)


def _defense(cfg: dict[str, Any], attacked: bool,
             run_path: Path | None = None) -> tuple[str, str | None]:
    """(defense, model label for a defended model folder) of a generate run's config (a
    defended model made in a study is looked up in the run's study as it is now): the model
    folder's stamp, else the runtime defense the run records, else a steer spec that adds."""
    from refusalscope.models.convert import read_stamp
    from refusalscope.study.portable import for_run

    path = Path(str(cfg.get("model")))
    if run_path is not None and path.is_absolute():
        path = for_run(path, run_path)
    for folder in (path, path / "model"):
        stamp = read_stamp(folder) if folder.is_dir() else None
        if stamp and stamp.get("defense"):
            return str(stamp["defense"]), stamp.get("label")
    if cfg.get("defense"):
        return str(cfg["defense"]), None
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


def _attack(run: Run) -> dict[str, Any]:
    """The Point fields of the attack a generate run evaluates (see `chain.py`)."""
    cfg = run.manifest.config
    parts = attack_parts(run)
    gen_seed = int(cfg.get("seed") or 0)
    if not parts:  # a baseline, or steering alone: attacked, compute unknown
        kind = "steer" if cfg.get("steer") else "none"
        nan = float("nan")
        return {"attack": kind, "attack_run": None, "variant": "", "n_data": None,
                "steps": None, "examples": 0.0 if kind == "none" else nan,
                "flops": 0.0 if kind == "none" else nan, "seed": (0, gen_seed), "parts": ()}
    steps = total(parts, "steps")
    return {"attack": kind_of(parts), "attack_run": parts[-1].run,
            "variant": "+".join(p.variant for p in parts if p.variant),
            "n_data": next((p.n_data for p in parts if p.n_data is not None), None),
            "steps": int(steps) if steps is not None else None,
            "examples": total(parts, "examples"), "flops": total(parts, "flops"),
            "seed": (parts[-1].seed, gen_seed), "parts": parts}
