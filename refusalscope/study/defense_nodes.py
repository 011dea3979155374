"""Study node runners for the defenses: `defend-tar`, `probe-sweep` (the direction the steering
defense adds back) and `defend-steer`. Each adopts a finished run of an earlier attempt; an
interrupted `defend-tar` resumes from its checkpoint, the other two start over (no resume)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from refusalscope.study.nodes import _adapter, _options, _runs


def _earlier(work: Path, command: str, *, resumable: bool) -> tuple[Any, str | None]:
    """(a finished run to adopt or None, a run to resume or None); drops what cannot resume."""
    earlier = _runs(work, command)
    if earlier and earlier[-1].manifest.status == "success":
        return earlier[-1], None
    if resumable and earlier:
        return None, str(earlier[-1].path)
    for r in earlier:
        shutil.rmtree(r.path)
    return None, None


def run_tar_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    from refusalscope.defenses.tar import TarConfig
    from refusalscope.defenses.tar_run import COMMAND, MODEL_DIR, run_tar

    p = dict(node.params)
    done, resume = _earlier(work, COMMAND, resumable=True)
    if done is None:
        p["data_file"] = p.pop("data")
        cfg = TarConfig.from_dict(p)
        done = run_tar(cfg, options=_options(p), resume=resume)
    return {"run": str(done.path), "model": str(done.path / MODEL_DIR)}


def run_sweep_node(node: Any, ins: dict[str, dict[str, Any]], work: Path) -> dict[str, Any]:
    from refusalscope.interp.sweep import DIRECTIONS, run_sweep

    p = node.params
    done, _ = _earlier(work, "probe-sweep", resumable=False)
    if done is None:
        done = run_sweep(model=p["model"], n=p["n"], n_val=p["n_val"],
                         positions=p["positions"], device=p.get("device", "auto"))
    return {"run": str(done.path), "directions": str(done.path / DIRECTIONS)}


def run_defend_steer_node(node: Any, ins: dict[str, dict[str, Any]],
                          work: Path) -> dict[str, Any]:
    from refusalscope.defenses.steer import COMMAND, SteerDefenseConfig, run_defend_steer

    p = node.params
    done, _ = _earlier(work, COMMAND, resumable=False)
    if done is None:
        cfg = SteerDefenseConfig(model=p["model"], directions=ins["directions"]["directions"],
                                 adapter=_adapter(p, ins), alphas=tuple(p["alphas"]), n=p["n"],
                                 skip=p["skip"], rule=p["rule"], target=p["target"],
                                 max_new_tokens=p["max_new_tokens"], seed=p["seed"])
        done = run_defend_steer(cfg, options=_options(p))
    chosen = done.manifest.extra["chosen"]
    return {"run": str(done.path), "alpha": chosen["alpha"], "steer": chosen["steer"]}


RUNNERS = {"tar": run_tar_node, "sweep": run_sweep_node, "steer": run_defend_steer_node}
