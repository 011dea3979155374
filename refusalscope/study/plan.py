"""Cost estimate of a study before it runs: tokens -> FLOPs -> rough minutes on CPU and GPU.

How it is estimated (dense matmuls only, as in `attacks.compute`; N = model parameters):
- generate: per prompt, 2 N FLOPs x (PROMPT_TOKENS + max_new_tokens): an upper bound, since
  refusals stop early;
- attack-lora: the longest cell's steps x batch x max_len tokens x 4 N (frozen weights cost a
  forward and an activation gradient; the adapter is negligible);
- attack-gcg: per step, one gradient pass over the suffix+target (6 N per token) and
  search_width candidate forwards (2 N per token), x prompts optimised;
- attack-autodan: generations x population x prompts x AUTODAN_TOKENS x 2 N;
- probe: 2 classes x n prompts x PROMPT_TOKENS x 2 N; score: the MiniLM classifier/embedder;
- defend-tar: outer steps x (inner steps + 2 batches) x batch x max_len tokens x 4 N;
- probe-sweep: 2 classes x (n + n_val) prompts x PROMPT_TOKENS x 2 N x SWEEP_PASSES (the
  selection re-runs the validation prompts per candidate layer: a rough factor);
- defend-steer: generation of 2 x n prompts per alpha, as generate.
Minutes = FLOPs / an effective rate per kind plus a fixed LOAD_S per node. CPU rates were
measured on this project's 2-core machine: generation 52 GFLOP/s (`benchmarks/RESULTS.md`: 0.5B,
32 prompts, 1,427 prompt + 1,360 new tokens in 52.7 s), LoRA training 89 GFLOP/s (0.5B, 16 pairs,
16 steps, 7,680 tokens in 170 s, with other jobs on the machine), prefill-only work (probe,
prompt-attack candidates) 140 GFLOP/s (a 0.5B prefill of 2,336 padded tokens in ~10 s, rounded
down). GPU_FLOPS assumes ~10% of an H100's bf16 peak, typical for small batches. Treat all of
them as order-of-magnitude figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.study.graph import Node

PROMPT_TOKENS = 48  # a chat-formatted eval prompt (template + median 11-word request)
AUTODAN_TOKENS = 400  # an AutoDAN prompt: template body + request
TARGET_TOKENS = 10
CPU_FLOPS = {"generate": 52e9, "attack-lora": 89e9, "attack-gcg": 140e9,
             "attack-autodan": 140e9, "probe": 140e9, "score": 140e9, "defend-tar": 89e9,
             "probe-sweep": 140e9, "defend-steer": 52e9}
SWEEP_PASSES = 8
GPU_FLOPS = 100e12
LOAD_S = {"cpu": 3.0, "gpu": 10.0}
MINILM_PARAMS = 22.7e6
SCORE_ROWS = 64  # responses per scored run (the plan does not read the generate node's n)
_UNITS = {"K": 1e3, "M": 1e6, "B": 1e9}


def model_params(model: str) -> float | None:
    """Nominal parameter count: the registry's, or a local folder's safetensors size / 4 bytes."""
    from refusalscope.models.registry import REGISTRY

    if model in REGISTRY:
        m = re.fullmatch(r"([\d.]+)([KMB])", REGISTRY[model].params or "")
        return float(m.group(1)) * _UNITS[m.group(2)] if m else None
    files = list(Path(model).glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) / 4 if files else None


def node_flops(node: Node) -> float | None:
    p = node.params
    if node.kind == "score":  # phrase matching is free; the classifier reads 96 tokens
        return 0.0 if p["scorer"] == "heuristic" else 2 * MINILM_PARAMS * 96 * SCORE_ROWS
    n_params = model_params(p["model"])
    if n_params is None:
        return None
    if node.kind == "generate":
        return 2 * n_params * p["n"] * (PROMPT_TOKENS + p["max_new_tokens"])
    if node.kind == "attack-lora":
        return 4 * n_params * max(p["steps"]) * p["batch_size"] * p["max_len"]
    if node.kind == "attack-gcg":
        toks = PROMPT_TOKENS + p["suffix_len"] + TARGET_TOKENS
        return p["steps"] * p["n"] * n_params * toks * (6 + 2 * p["search_width"])
    if node.kind == "attack-autodan":
        return 2 * n_params * p["generations"] * p["population"] * p["n"] * AUTODAN_TOKENS
    if node.kind == "probe":
        return 2 * n_params * 2 * p["n"] * PROMPT_TOKENS
    if node.kind == "defend-tar":
        return (4 * n_params * p["outer_steps"] * (p["inner_steps"] + 2) * p["batch_size"]
                * p["max_len"])
    if node.kind == "probe-sweep":
        return 2 * n_params * 2 * (p["n"] + p["n_val"]) * PROMPT_TOKENS * SWEEP_PASSES
    if node.kind == "defend-steer":
        return 2 * n_params * len(p["alphas"]) * 2 * p["n"] * (PROMPT_TOKENS
                                                               + p["max_new_tokens"])
    return None


@dataclass(frozen=True)
class NodeCost:
    node: Node
    flops: float | None
    cpu_min: float | None
    gpu_min: float | None


def estimate(nodes: list[Node]) -> list[NodeCost]:
    out = []
    for n in nodes:
        f = node_flops(n)
        cpu = (f / CPU_FLOPS[n.kind] + LOAD_S["cpu"]) / 60 if f is not None else None
        gpu = (f / GPU_FLOPS + LOAD_S["gpu"]) / 60 if f is not None else None
        out.append(NodeCost(n, f, cpu, gpu))
    return out


def totals(costs: list[NodeCost]) -> dict[str, Any]:
    known = [c for c in costs if c.flops is not None]
    return {"nodes": len(costs), "unknown": len(costs) - len(known),
            "flops": sum(c.flops or 0 for c in known),
            "cpu_min": sum(c.cpu_min or 0 for c in known),
            "gpu_min": sum(c.gpu_min or 0 for c in known)}
