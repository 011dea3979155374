"""`study run` on a tiny spec: runs, reruns without redoing work, retries and reports failures,
and survives SIGKILL at random moments (real processes) without redoing finished nodes or
leaving duplicated or half-written results."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from study_fixtures import TINY_SPEC, make_study
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.study.executor import node_dir, node_state, record, study_dir
from refusalscope.study.graph import expand
from refusalscope.study.spec import load_spec


def _snapshot(study: Path) -> dict[str, tuple[int, str]]:
    """node id -> (mtime_ns, content) of every node.json: what 'done' means."""
    return {f.parent.name: (f.stat().st_mtime_ns, f.read_text())
            for f in (study / "nodes").glob("*/node.json")}


def _check_results(spec_path: Path) -> None:
    """Every node done once: one run per generate node, one score pair per score node, one
    cell run per LoRA step, every generations file whole, no temp files anywhere."""
    spec = load_spec(str(spec_path))
    nodes = expand(spec)
    study = study_dir(spec.name)
    assert all(node_state(study, n) == "done" for n in nodes)
    for n in nodes:
        work = node_dir(study, n)
        rec = record(study, n)  # output paths absolute again (node.json keeps them relative)
        assert rec is not None
        runs = sorted((work / "runs").glob("*")) if (work / "runs").is_dir() else []
        if n.kind == "generate":
            assert [str(r) for r in runs] == [rec["outputs"]["run"]]
            rows = [json.loads(line) for line in (runs[0] / "generations.jsonl").read_text()
                    .splitlines()]
            assert sorted(r["id"] for r in rows) == [f"q{i}" for i in range(4)]
            gen_run = runs[0]
            assert sorted(p.name for p in gen_run.glob("scores*")) == ["scores.jsonl"]
            assert sorted(p.name for p in gen_run.glob("metrics*")) == ["metrics.json"]
            events = json.loads((gen_run / "manifest.json").read_text())["extra"]["scores"]
            assert len(events) == 1
        if n.kind == "attack-lora":
            assert sorted(rec["outputs"]["runs"]) == ["1", "3"] and len(runs) == 2
        if n.kind == "score":
            metrics = json.loads(Path(rec["outputs"]["metrics"]).read_text())
            assert metrics["rrr"]["n"] == 4
    leftovers = [p for p in study.rglob("*") if p.name.endswith(".tmp") or p.name == "running.json"]
    assert not leftovers


def test_run_then_rerun_skips_everything(tmp_path: Path) -> None:
    spec = make_study(tmp_path / "s")
    res = CliRunner().invoke(app, ["study", "run", str(spec)])
    assert res.exit_code == 0, res.output
    assert "7 ran, 0 already done, 0 failed, 0 blocked" in res.output
    study = study_dir("tiny")
    before = _snapshot(study)
    assert len(before) == 7
    _check_results(spec)
    res = CliRunner().invoke(app, ["study", "run", str(spec)])
    assert "0 ran, 7 already done" in res.output
    assert _snapshot(study) == before
    res = CliRunner().invoke(app, ["study", "status", str(spec)])
    assert "7 done, 0 running, 0 failed, 0 pending" in res.output
    res = CliRunner().invoke(app, ["study", "report", str(spec), "--out", str(tmp_path / "rep"),
                                 "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "| tiny-llama | lora | 4 | 3 | 0 | heuristic | 4 |" in report
    csv_rows = (tmp_path / "rep" / "results.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 3  # header + baseline + 2 LoRA cells
    assert "### RRR (vs compute)" in report and (tmp_path / "rep" / "fit" / "rrr" / "fit.json").is_file()
    res = CliRunner().invoke(app, ["study", "report", str(spec), "--out", str(tmp_path / "rep"),
                                 "--n-boot", "50"])
    assert res.exit_code == 2 and "already holds a report.md" in res.output


def test_failures_are_retried_reported_and_block_downstream(tmp_path: Path) -> None:
    # 40 pairs asked of an 8-pair file: the LoRA node fails every attempt (a real error).
    spec = make_study(tmp_path / "s", TINY_SPEC.replace("n_data = [4]", "n_data = [40]"))
    res = CliRunner().invoke(app, ["study", "run", str(spec), "--max-retries", "1"])
    assert res.exit_code == 1
    assert "2 ran, 0 already done, 1 failed, 4 blocked" in res.output
    nodes = expand(load_spec(str(spec)))
    lora = next(n for n in nodes if n.kind == "attack-lora")
    study = study_dir("tiny")
    tries = [json.loads(x) for x in (node_dir(study, lora) / "attempts.jsonl").read_text()
             .splitlines()]
    assert [t["status"] for t in tries if t["event"] == "end"] == ["error", "error"]
    assert node_state(study, lora) == "failed"
    res = CliRunner().invoke(app, ["study", "status", str(spec)])
    assert "2 done, 0 running, 1 failed, 4 pending" in res.output


def _start(spec: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "refusalscope", "study", "run", str(spec)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=os.environ.copy())


def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    spec = make_study(tmp_path / "s")
    study = study_dir("tiny")
    rng = random.Random(1)
    log = tmp_path / "run.log"
    kept: dict[str, tuple[int, str]] = {}
    for _ in range(3):
        proc = _start(spec, log)
        time.sleep(rng.uniform(1.5, 10.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        snap = _snapshot(study) if (study / "nodes").is_dir() else {}
        assert all(snap[k] == v for k, v in kept.items())  # finished nodes never redone
        kept = snap
    proc = _start(spec, log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    final = _snapshot(study)
    assert all(final[k] == v for k, v in kept.items())
    assert len(final) == 7
    _check_results(spec)


def test_report_quotes_wilson_where_the_bootstrap_is_a_point() -> None:
    from refusalscope.study.report import _ci95
    zero = {"rrr_lo": 0.0, "rrr_hi": 0.0, "wilson_lo": 0.0, "wilson_hi": 0.107}
    assert _ci95(zero) == "[0.000, 0.107] (W)"
    assert _ci95({"rrr_lo": 0.5, "rrr_hi": 0.734, "wilson_lo": 0.503, "wilson_hi": 0.733}) \
        == "[0.500, 0.734]"
    assert _ci95({"rrr_lo": None, "rrr_hi": None}) == ""
