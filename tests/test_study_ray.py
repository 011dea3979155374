"""The Ray executor on a real local Ray cluster gives the same results as the local executor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from study_fixtures import make_study

from refusalscope.study.executor import record, run_local, study_dir
from refusalscope.study.graph import expand
from refusalscope.study.spec import load_spec

ray = pytest.importorskip("ray")


def _results(study: Path, nodes: list) -> dict[str, object]:
    """node id -> what it produced: responses for generate nodes, labels and RRR for scores."""
    out: dict[str, object] = {}
    for n in nodes:
        o = record(study, n)["outputs"]
        if n.kind == "generate":
            rows = [json.loads(x) for x in
                    (Path(o["run"]) / "generations.jsonl").read_text().splitlines()]
            out[n.id] = sorted((r["id"], r["response"]) for r in rows)
        elif n.kind == "score":
            m = json.loads(Path(o["metrics"]).read_text())
            labels = [json.loads(x)["refused"] for x in Path(o["scores"]).read_text().splitlines()]
            out[n.id] = (m["rrr"]["rate"], m["rrr"]["ci"], labels)
        else:
            losses = {s: Path(p, "loss.jsonl").read_text() for s, p in o["runs"].items()}
            out[n.id] = losses
    return out


def test_ray_matches_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from refusalscope.study.ray_exec import run_ray

    spec_path = make_study(tmp_path / "s")
    nodes = expand(load_spec(str(spec_path)))
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "local"))
    local = study_dir("tiny")
    out = run_local(local, nodes)
    assert not out.failed and len(out.done) == 7
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "ray"))
    remote = study_dir("tiny")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS",
                                                                         "2")}})
    try:
        out = run_ray(remote, nodes)
    finally:
        ray.shutdown()
    assert not out.failed and not out.blocked and len(out.done) == 7, out
    assert _results(remote, nodes) == _results(local, nodes)
    assert all(str(tmp_path / "ray") in record(remote, n)["outputs"].get("run", str(tmp_path / "ray"))
               for n in nodes)
