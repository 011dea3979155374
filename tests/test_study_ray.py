"""The Ray executor on a real local Ray cluster gives the same results as the local executor,
and retries then reports a failing node while the nodes that do not need it finish.

Ray is a test dependency (pyproject's `test` extra): without it these tests fail, never skip.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import ray
from study_fixtures import TINY_SPEC, make_study

from refusalscope.study.executor import ATTEMPTS, node_dir, record, run_local, study_dir
from refusalscope.study.graph import expand
from refusalscope.study.spec import load_spec


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
    spec_path = make_study(tmp_path / "s")
    nodes = expand(load_spec(str(spec_path)))
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "local"))
    local = study_dir("tiny")
    out = run_local(local, nodes)
    assert not out.failed and len(out.done) == 7
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "ray"))
    remote = study_dir("tiny")
    out = _run_ray(remote, nodes)
    assert not out.failed and not out.blocked and len(out.done) == 7, out
    assert _results(remote, nodes) == _results(local, nodes)
    for n in nodes:  # every node's every output path was written under the Ray study
        paths = _paths(record(remote, n)["outputs"])
        assert paths and all(Path(p).resolve().is_relative_to(remote.resolve()) for p in paths), n


def _run_ray(study: Path, nodes: list, **kw):  # type: ignore[no-untyped-def]
    from refusalscope.study.ray_exec import run_ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS",
                                                                         "2")}})
    try:
        return run_ray(study, nodes, **kw)
    finally:
        ray.shutdown()


def _paths(outputs: dict) -> list[str]:
    """Every path in a node's outputs (`runs` maps steps to paths)."""
    out: list[str] = []
    for v in outputs.values():
        out += _paths(v) if isinstance(v, dict) else [v] if isinstance(v, str) else []
    return out


def test_ray_retries_a_failing_node_and_finishes_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second model whose weights are corrupt: its generate node fails 1 + 1 retry times and
    is reported failed, its score node blocked; the good model's nodes all finish."""
    import shutil

    spec = TINY_SPEC.split("[attacks.lora]")[0] + '[[models]]\nname = "broken-llama"\n'
    spec_path = make_study(tmp_path / "s", spec)
    shutil.copytree(tmp_path / "s" / "tiny-llama", tmp_path / "s" / "broken-llama")
    (tmp_path / "s" / "broken-llama" / "model.safetensors").write_bytes(b"not safetensors")
    nodes = expand(load_spec(str(spec_path)))
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "ray"))
    study = study_dir("tiny")
    out = _run_ray(study, nodes, max_retries=1)
    by_model = {m: [n for n in nodes if m in n.label] for m in ("tiny-llama", "broken-llama")}
    assert sorted(out.done) == sorted(n.id for n in by_model["tiny-llama"]) and out.done
    bad_gen = next(n for n in by_model["broken-llama"] if n.kind == "generate")
    assert list(out.failed) == [bad_gen.id]
    assert out.blocked == {n.id: f"input {bad_gen.id} did not finish"
                           for n in by_model["broken-llama"] if n is not bad_gen}
    tries = (node_dir(study, bad_gen) / ATTEMPTS).read_text().splitlines()
    ends = [json.loads(t) for t in tries if json.loads(t)["event"] == "end"]
    assert [e["status"] for e in ends] == ["error", "error"] and record(study, bad_gen) is None
