"""Run a study on a Ray cluster: each node one Ray task with its CPU/GPU needs.

Tasks receive their inputs' records as object refs, so Ray starts a node when its inputs are
done, and nodes without a path between them run in parallel. Every task writes into the same
study folder (`artifacts/studies/<name>/`), which must be on a path all Ray nodes share; a task
runs `executor.execute_node`, the same code as the local executor, so a node's results do not
depend on where it ran, and retries, records and resumption are the same.

Connects to `address` (`RAY_ADDRESS` or a running cluster with "auto"); with none, starts a local
one. GPUs are asked for only when the cluster has them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.study.executor import Outcome, execute_node, tally
from refusalscope.study.graph import RESOURCES, Node

_ENV = ("REFUSALSCOPE_HOME", "REFUSALSCOPE_WHEELHOUSE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
        "HF_HOME")


def _task(study: str, node: dict[str, Any], max_retries: int, *inputs: dict[str, Any]) -> dict[str, Any]:
    """Body of one Ray task (input records arrive resolved, in `node.inputs` order)."""
    n = Node.from_dict(node)
    bad = [r["id"] for r in inputs if r.get("status") != "success"]
    if bad:
        return {**n.to_dict(), "status": "blocked", "error": f"input {bad[0]} did not finish"}
    ins = {role: r["outputs"] for role, r in zip(n.inputs, inputs, strict=True)}
    return execute_node(Path(study), n, ins, max_retries)


def run_ray(study: Path, nodes: Sequence[Node], *, max_retries: int = 2,
            address: str | None = None,
            on_node: Callable[[Node, dict[str, Any]], None] | None = None) -> Outcome:
    """Submit every node as a Ray task (dependencies as object refs) and gather the records."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install ray==2.60.0") from None
    started = False
    if not ray.is_initialized():
        ray.init(address=address or os.environ.get("RAY_ADDRESS"), include_dashboard=False,
                 log_to_driver=False)
        started = True
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        cpus = max(1.0, ray.cluster_resources().get("CPU", 1))
        env = {k: os.environ[k] for k in _ENV if k in os.environ}
        remote = ray.remote(_task)
        refs: dict[str, Any] = {}
        for node in nodes:
            need = RESOURCES.get(node.kind, {"cpus": 1, "gpus": 0})
            opts = {"num_cpus": min(need["cpus"], cpus), "num_gpus": need["gpus"] if gpus else 0,
                    "max_retries": 0, "runtime_env": {"env_vars": env}}
            deps = [refs[d] for d in node.inputs.values()]
            refs[node.id] = remote.options(**opts).remote(str(study.resolve()), node.to_dict(),
                                                          max_retries, *deps)
        out = Outcome()
        for node in nodes:
            try:
                rec = ray.get(refs[node.id])
            except ray.exceptions.RayError as e:  # a worker died (OOM, kill): failed, not lost
                bad = [d for d in node.inputs.values() if d in out.failed or d in out.blocked]
                err = " ".join(f"{type(e).__name__}: {e}".split())[:500]
                rec = {**node.to_dict(), "status": "blocked" if bad else "error",
                       "error": f"input {bad[0]} did not finish" if bad else err}
            if rec["status"] == "blocked":
                out.blocked[node.id] = rec["error"]
            else:
                tally(out, node, rec)
            if on_node is not None:
                on_node(node, rec)
        return out
    finally:
        if started:
            ray.shutdown()
