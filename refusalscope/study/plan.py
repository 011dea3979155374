"""Cost estimate of a study before it runs: the compute ledger's FLOPs over measured rates.

FLOPs: each node's work in the formulas of `refusalscope.compute` (the ledger every run's
`compute.json` is written with), on the model's parameter classes (`params_for`) and the token
counts below. Minutes: FLOPs / a measured rate for the node's kind of work and model size, plus
`LOAD_S` per node.

Rates (ledger FLOPs per second) come from a measured-rates JSON written by
`benchmarks/gpu_check.py` (`bash benchmarks/gpu_check.sh` on a GPU; `study plan --rates FILE`).
The default, `rates_cpu.json` beside this module, was measured on this project's shared 2-core
CPU by the same script (`--device cpu --profile cpu`, a random-init 0.5B shape in fp32); the
file says when, on what, at which commit. It was measured under heavy load (load average ~20,
one thread), so its CPU minutes are pessimistic; `benchmarks/RESULTS.md` has the run. Four kinds of work are measured: `generate` (the tool's generation loop: generate,
defend-steer), `train` (a LoRA step: attack-lora, defend-tar), `gcg` (one GCG step) and
`prefill` (forward passes: probe, probe-sweep, attack-autodan's fitness). Between measured
model sizes a rate is interpolated in log N_body, outside them the nearest is used; `train`
takes the measured batch x length nearest the node's. Scoring runs MiniLM on the CPU, so score
nodes always use the default CPU file's prefill rate.

Token counts (upper bounds where the real count depends on the model's replies):
- generate: per prompt PROMPT_TOKENS, then every reply at max_new_tokens;
- pairs (`data pairs`): every attack-train prompt answered `samples` times, as generate (the
  run stops once n pairs are kept; the scoring of each answer is left out);
- attack-<name>: the registered attack's own `cost` formula (`attacks.registry`; e.g.
  `gcg_run.GCGAttack.cost`), timed at its `work` rate; defend-<name>: the registered
  defense's `cost` (`defenses.registry`; TAR: batch x max_len tokens per step, the loss on
  half of them; steer: every alpha's generations), timed at its `work` rate;
- probe / probe-sweep: 2 classes x prompts x PROMPT_TOKENS (sweep x SWEEP_PASSES: the
  selection re-runs the validation prompts per candidate layer, a rough factor);
- score: the MiniLM classifier over SCORE_ROWS responses of 96 tokens.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.compute import ParamCounts, forward_flops, generation_flops
from refusalscope.errors import UserError
from refusalscope.study.graph import Node

PROMPT_TOKENS = 48  # a chat-formatted eval prompt (template + median 11-word request)
SWEEP_PASSES = 8
ATTACK_TRAIN_PROMPTS = 758  # the attack-train split a `pairs` node answers
LOAD_S = {"CPU": 3.0, "GPU": 10.0}
MINILM_PARAMS = 22.7e6
SCORE_ROWS = 64  # responses per scored run (the plan does not read the generate node's n)
DEFAULT_RATES = Path(__file__).with_name("rates_cpu.json")
# Attack and defense kinds say their own (`Attack.work`, `Defense.work`, `work_of`).
WORK = {"generate": "generate", "pairs": "generate", "probe": "prefill",
        "probe-sweep": "prefill", "score": "prefill"}
_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9}


@dataclass(frozen=True)
class Rates:
    """A measured-rates file: ledger FLOP/s per kind of work at each measured model shape."""

    device: str
    unit: str  # "GPU" or "CPU": what the hours are hours of
    source: str  # the file, and the run that measured it
    shapes: tuple[dict[str, Any], ...]

    def rate(self, work: str, n_body: float, tokens: int | None = None) -> float | None:
        """FLOP/s for `work` on a model of `n_body` body parameters (None: not measured)."""
        pts = []
        for s in self.shapes:
            r = s["rates"].get(work)
            if isinstance(r, list):  # train: the batch x length nearest `tokens`
                r = min(r, key=lambda e: abs(math.log(e["batch"] * e["seq"] / (tokens or 1024))))
            if r:
                pts.append((math.log(s["params_body"]), r["flops_per_s"]))
        if not pts:
            return None
        pts.sort()
        x = math.log(max(n_body, 1.0))
        if x <= pts[0][0]:
            return pts[0][1]
        for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
            if x <= x1:
                return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return pts[-1][1]


def load_rates(path: str | Path | None = None) -> Rates:
    """Read a measured-rates JSON (default: the shipped CPU file)."""
    p = Path(path) if path is not None else DEFAULT_RATES
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
        shapes = tuple(d["shapes"])
        if not all("params_body" in s and "rates" in s for s in shapes):
            raise KeyError("shapes")
        return Rates(device=str(d["device"]), unit=str(d.get("unit", "GPU")),
                     source=f"{p} ({d.get('measured_by', '?')}, {d.get('measured_at', '?')})",
                     shapes=shapes)
    except FileNotFoundError:
        raise UserError(f"--rates {p}: no such file (benchmarks/gpu_check.sh writes one)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"--rates {p}: not a measured-rates file from benchmarks/gpu_check.py "
                        f"({type(e).__name__}: {e})") from None


def params_for(model: str) -> ParamCounts | None:
    """Parameter classes of `model`: counted on a local folder's config (meta device, no
    weights read), else from the registry's released and non-embedding counts (input
    embedding and head of equal size; a registry entry with a nominal size only, such as
    "3B", is all body). The LoRA adapter (< 0.3% of the body at rank 8) is left out."""
    from refusalscope.models.registry import REGISTRY

    if (Path(model) / "config.json").is_file():
        return _counted(Path(model))
    entry = REGISTRY.get(model)
    if entry is None:
        return None
    if entry.params_released is not None and entry.params_non_embedding is not None:
        emb = entry.params_released - entry.params_non_embedding
        emb = emb if entry.tied_embeddings else emb // 2
        return ParamCounts(total=entry.params_released, trainable=0,
                           body=entry.params_non_embedding, head=emb, embedding=emb,
                           tied=bool(entry.tied_embeddings))
    m = re.fullmatch(r"([\d.]+)([KMB])", entry.params or "")
    if not m:
        return None
    n = int(float(m.group(1)) * _UNITS[m.group(2)])
    return ParamCounts(total=n, trainable=0, body=n, head=0)


def _counted(folder: Path) -> ParamCounts | None:
    """Counted on the config (meta device); a config transformers cannot build as a causal LM
    falls back to the safetensors bytes / 4, all body (the old nominal estimate)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from refusalscope.compute import count_params

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
        return count_params(model, trained=False)
    except (ValueError, KeyError, OSError, TypeError):
        size = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
        return ParamCounts(total=size // 4, trainable=0, body=size // 4, head=0) if size else None


def _attack(kind: str) -> Any:
    """The registered attack of an `attack-<name>` node kind (None: not registered)."""
    from refusalscope.attacks.registry import REGISTRY

    return REGISTRY.get(kind.removeprefix("attack-"))


def _defense(kind: str) -> Any:
    """The registered defense of a `defend-<name>` node kind (None: not a defense)."""
    from refusalscope.defenses.registry import node_defense

    return node_defense(kind)


def work_of(kind: str) -> str | None:
    """The kind of measured work (a rate in the rates file) a node kind's FLOPs run at."""
    if kind.startswith("attack-"):
        a = _attack(kind)
        return getattr(a, "work", "prefill") if a is not None else None
    d = _defense(kind)
    return d.work if d is not None else WORK.get(kind)


def node_flops(node: Node, p: ParamCounts) -> float | None:
    """The node's ledger FLOPs on a model with parameter classes `p` (see the module doc);
    None for a kind without a formula (counted as unknown)."""
    q = node.params
    k = node.kind
    if k == "generate":
        return q["n"] * generation_flops(p, PROMPT_TOKENS, q["max_new_tokens"])
    if (d := _defense(k)) is not None:  # the defense's own formula (`Defense.cost`)
        return _defense_cost(d, node, p)
    if k.startswith("attack-"):  # the attack's own formula (`Attack.cost`)
        a = _attack(k)
        if a is None:
            return None
        from refusalscope.attacks.runner import config_fields

        n = 1 if q.get("mode") == "individual" else q.get("n", 1)
        return a.cost(a.config_cls(**config_fields(a, q)), p, n)
    if k == "probe":
        return 2 * q["n"] * forward_flops(p, PROMPT_TOKENS, 1)
    if k == "probe-sweep":
        return 2 * (q["n"] + q["n_val"]) * forward_flops(p, PROMPT_TOKENS, 1) * SWEEP_PASSES
    if k == "pairs":
        return (q.get("samples", 1) * ATTACK_TRAIN_PROMPTS
                * generation_flops(p, PROMPT_TOKENS, q["max_new_tokens"]))
    return None


def _defense_cost(d: Any, node: Node, p: ParamCounts) -> float:
    """`Defense.cost` of the node's config; the files of inputs not made yet (a direction)
    are named by a stand-in, which no formula reads."""
    from refusalscope.defenses.base import config_from

    planned = {role: f"<{role} of {node.inputs.get(role, 'an input')}>"
               for role in d.study_inputs}
    return d.cost(config_from(d, {**node.params, **planned}), p)


@dataclass(frozen=True)
class NodeCost:
    node: Node
    flops: float | None
    cpu_min: float | None  # on the default CPU rates
    device_min: float | None  # on `--rates` (the CPU file again when none is given)

    @property
    def gpu_min(self) -> float | None:
        """Kept for older callers: `device_min` (minutes on whatever `--rates` measured)."""
        return self.device_min


def _minutes(node: Node, flops: float | None, p: ParamCounts | None, rates: Rates,
             cpu: Rates) -> float | None:
    if flops is None:
        return None
    tokens = node.params.get("batch_size", 1) * node.params.get("max_len", 1024)
    r = (cpu.rate("prefill", MINILM_PARAMS) if node.kind == "score"
         else rates.rate(work_of(node.kind) or "prefill", p.body if p else 0, tokens))
    if r is None:
        return None
    unit = "CPU" if node.kind == "score" else rates.unit
    return (flops / r + LOAD_S.get(unit, 10.0)) / 60


def estimate(nodes: list[Node], rates: Rates | None = None) -> list[NodeCost]:
    """Cost of each node: ledger FLOPs, minutes on the default CPU rates and on `rates`."""
    cpu = load_rates()
    rates = rates or cpu
    out = []
    for n in nodes:
        if n.kind == "score":
            p, f = None, (0.0 if n.params["scorer"] == "heuristic"
                          else 2 * MINILM_PARAMS * 96 * SCORE_ROWS)
        else:
            p = params_for(n.params["model"])
            f = node_flops(n, p) if p is not None else None
        out.append(NodeCost(n, f, _minutes(n, f, p, cpu, cpu), _minutes(n, f, p, rates, cpu)))
    return out


def totals(costs: list[NodeCost]) -> dict[str, Any]:
    known = [c for c in costs if c.flops is not None]
    return {"nodes": len(costs), "unknown": len(costs) - len(known),
            "flops": sum(c.flops or 0 for c in known),
            "cpu_min": sum(c.cpu_min or 0 for c in known),
            "device_min": sum(c.device_min or 0 for c in known),
            "gpu_min": sum(c.device_min or 0 for c in known)}
