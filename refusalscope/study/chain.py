"""Which attack a scored generate run evaluates, as a chain of parts, and what it cost.

A generate run names its attack through `--adapter RUN` (an `attack-lora` cell run), its
`attack_run` (any other weights attack's run, whose `apply` made the model) and/or `--prompts
FILE` written inside an attack run (`attack gcg|autodan|template`). With an adapter and
prompts, as a study's `after = "lora"` prompt attack makes them, the run evaluates the chain
LoRA → prompt attack on the LoRA-attacked model: its own attack kind ("lora+gcg",
"lora+autodan"), never the plain LoRA cell it starts from, and its compute is the sum of the
parts' (examples, steps and FLOPs), each part kept.

Per part: `examples` = examples processed over all steps (LoRA: `compute.json`'s
`examples_seen`; a prompt attack without that field: its attack prompts × steps, the prompts
each step's loss is taken over), `steps` (LoRA steps, GCG steps, AutoDAN generations; None for
a template attack, which has none), `flops` (the run's own estimate).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from refusalscope.runs import Run, config_id
from refusalscope.study.portable import for_run

# Config keys (at any depth: GCG and AutoDAN nest theirs) that do not make an attack a different
# variant: the replicate seed, the grid axes (AutoDAN's steps are generations), the model,
# bookkeeping, and the adapter a chained prompt attack read (the LoRA part says it).
_NOT_VARIANT = ("seed", "n_data", "n", "steps", "generations", "model", "save_every", "skip",
                "adapter")


@dataclass(frozen=True)
class AttackPart:
    """One attack of a chain: its kind and run, its grid cell and its compute (units as above)."""

    kind: str  # lora | gcg | autodan | template | adapter (an adapter folder that is no run)
    run: str | None
    variant: str  # content id of the config without `_NOT_VARIANT` keys
    seed: int
    n_data: int | None  # LoRA training pairs, or a prompt attack's attack prompts
    steps: int | None
    examples: float
    flops: float
    base_params: int | None = None  # the attacked base model's parameters (LoRA compute.json)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kind_of(parts: tuple[AttackPart, ...]) -> str:
    """The attack kind of a chain: "none", "lora", "gcg", "lora+gcg", …"""
    return "+".join(p.kind for p in parts) or "none"


def total(parts: tuple[AttackPart, ...], field: str) -> float | None:
    """The chain's `field` ("examples", "steps" or "flops") summed over its parts; 0 for no
    attack; None (steps) or NaN (examples, flops) when a part does not know it."""
    vals = [getattr(p, field) for p in parts]
    if field == "steps":
        return None if any(v is None for v in vals) else sum(vals)
    return float(sum(vals))  # NaN propagates


def run_of(ref: str | None, run: Run) -> Run | None:
    """The run folder a config path names (the folder itself, its parent, or either one beside
    `run` or in `run`'s study, for folders moved as a whole); None when it names no run."""
    if not ref:
        return None
    p, q = Path(ref), for_run(ref, run.path)
    for cand in (p, p.parent, q, q.parent, run.path.parent / p.name,
                 run.path.parent / p.parent.name):
        if (cand / "manifest.json").is_file() and cand.resolve() != run.path.resolve():
            return Run.open(cand)
    return None


def attack_parts(run: Run) -> tuple[AttackPart, ...]:
    """The attacks a generate run evaluates, in the order they were applied (weights first).

    Example:
        >>> kind_of(attack_parts(Run.open(path)))   # a GCG run after a LoRA cell
        'lora+gcg'
    """
    cfg = run.manifest.config
    parts = []
    adapter = run_of(cfg.get("adapter"), run)
    if adapter is not None:
        parts.append(part_of(adapter))
    elif cfg.get("adapter"):
        parts.append(AttackPart("adapter", None, "", 0, None, None, float("nan"), float("nan")))
    weights = run_of(cfg.get("attack_run"), run)
    if weights is not None:
        parts.append(part_of(weights))
    prompts = run_of(cfg.get("prompts_file"), run)
    if prompts is not None and (adapter is None
                                or prompts.path.resolve() != adapter.path.resolve()):
        parts.append(part_of(prompts))
    return tuple(parts)


def part_of(att: Run) -> AttackPart:
    """One attack run as a part: its kind, cell and compute."""
    acfg = dict(att.manifest.config)
    compute = compute_of(att)
    n_data = acfg.get("n_data", acfg.get("n"))
    steps = compute.get("steps", acfg.get("steps"))
    examples = compute.get("examples_seen")
    if examples is None and steps is not None and n_data is not None:
        examples = int(n_data) * int(steps)  # a prompt attack: its prompts at every step
    rest = _variant_keys(acfg)
    base = compute.get("total_params")
    return AttackPart(kind=att.manifest.command.removeprefix("attack-"), run=att.id,
                      variant=config_id(rest)[:4], seed=int(acfg.get("seed") or 0),
                      n_data=int(n_data) if n_data is not None else None,
                      steps=int(steps) if steps is not None else None,
                      examples=float(examples) if examples is not None else float("nan"),
                      flops=float(compute.get("flops_estimate", compute.get("flops",
                                                                            float("nan")))),
                      base_params=int(base) if base else None)


def _variant_keys(cfg: dict[str, Any]) -> dict[str, Any]:
    """`cfg` without the `_NOT_VARIANT` keys, nested tables included."""
    return {k: _variant_keys(v) if isinstance(v, dict) else v for k, v in cfg.items()
            if k not in _NOT_VARIANT}


def compute_of(att: Run) -> dict[str, Any]:
    """An attack run's compute record: `compute.json`, `result.json`'s `compute`, or the
    manifest's `extra.compute`."""
    for name in ("compute.json", "result.json"):
        f = att.file(name)
        if f.is_file():
            d = json.loads(f.read_text(encoding="utf-8"))
            return dict(d.get("compute", d)) if name == "result.json" else dict(d)
    return dict(att.manifest.extra.get("compute") or {})
