"""`study run` on a tiny spec: runs, reruns without redoing work, retries and reports failures,
and survives SIGKILL mid-node (real processes, stopped at a named moment by `stop_driver`)
without redoing finished nodes or leaving duplicated or half-written results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stop_driver import process_state
from study_fixtures import TINY_SPEC, make_study
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.fileio import read_jsonl, sha256_file
from refusalscope.study.executor import node_dir, node_state, record, study_dir
from refusalscope.study.graph import expand
from refusalscope.study.spec import load_spec

DRIVER = Path(__file__).with_name("stop_driver.py")


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


_CHILDREN: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_stray_children() -> Iterator[None]:
    """A failing test leaves no stopped `study run` behind."""
    yield
    while _CHILDREN:
        proc = _CHILDREN.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start(spec: Path, log: Path, point: str = "none") -> subprocess.Popen:
    """`study run` in a child process that stops itself at `point` (see `stop_driver`)."""
    proc = subprocess.Popen([sys.executable, str(DRIVER), point, "study", "run", str(spec)],
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, env=os.environ.copy())
    _CHILDREN.append(proc)
    return proc


def _stopped_at(spec: Path, point: str, log: Path) -> subprocess.Popen:
    """Start a run and wait until it has stopped itself at `point`: nothing moves until SIGKILL.
    No deadline of its own: the per-test timeout ends a run that never gets there."""
    proc = _start(spec, log, point)
    while process_state(proc.pid) != "T":
        assert proc.poll() is None, f"exited before {point}: {log.read_text()[-3000:]}"
        time.sleep(0.02)
    return proc


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _files(folder: Path) -> dict[str, tuple[int, str]]:
    """relative path -> (mtime_ns, sha256) of every file under `folder`."""
    return {str(f.relative_to(folder)): (f.stat().st_mtime_ns, sha256_file(f))
            for f in sorted(folder.rglob("*")) if f.is_file()}


def _results(spec_path: Path) -> dict[str, object]:
    """What a study computed, node by node: responses, labels, RRR, LoRA losses."""
    study = study_dir("tiny")
    out: dict[str, object] = {}
    for n in expand(load_spec(str(spec_path))):
        rec = record(study, n)
        assert rec is not None, n.id
        o = rec["outputs"]
        if n.kind == "generate":
            out[n.id] = sorted((r["id"], r["response"]) for r in
                               read_jsonl(Path(o["run"]) / "generations.jsonl"))
        elif n.kind == "score":
            out[n.id] = (sorted((r["id"], r["refused"], r["outcome"]) for r in
                                read_jsonl(Path(o["scores"]))),
                         json.loads(Path(o["metrics"]).read_text())["rrr"]["rate"])
        elif n.kind == "attack-lora":
            out[n.id] = {k: [r["loss"] for r in read_jsonl(Path(run) / "loss.jsonl")]
                         for k, run in o["runs"].items()}
    return out


# Eval batches of 1 prompt: generations.jsonl grows a row at a time, so it can be half written.
SPEC_ROWWISE = TINY_SPEC.replace("max_new_tokens = 6\nbatch_size = 4",
                                 "max_new_tokens = 6\nbatch_size = 1")


def test_sigkill_mid_node_then_resume_equals_an_uninterrupted_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL lands inside a generate node (2 of 4 rows written), after a score node's
    scoring but before its record, and inside the LoRA node (its first cell written, the
    second training); each resume keeps finished nodes and the finished cell byte for byte,
    and the results equal an uninterrupted run of the same spec."""
    assert SPEC_ROWWISE != TINY_SPEC
    spec = make_study(tmp_path / "s", SPEC_ROWWISE)
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "reference"))
    res = CliRunner().invoke(app, ["study", "run", str(spec)])
    assert res.exit_code == 0, res.output
    want = _results(spec)
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "artifacts"))
    study = study_dir("tiny")
    nodes = expand(load_spec(str(spec)))  # the run order: baseline generate, its score, LoRA...
    gen, score, lora = (next(n for n in nodes if n.kind == k)
                        for k in ("generate", "score", "attack-lora"))
    log = tmp_path / "run.log"

    proc = _stopped_at(spec, "generate-partial", log)
    (partial,) = study.glob("nodes/*/runs/*/generations.jsonl")
    assert partial.parents[2] == node_dir(study, gen) and _snapshot(study) == {}
    rows = partial.read_text().splitlines()
    assert len(rows) == 2
    _kill(proc)

    proc = _stopped_at(spec, "score-unrecorded", log)
    kept = _snapshot(study)
    assert set(kept) == {gen.id}
    assert sorted(node_dir(study, gen).glob("runs/*")) == [partial.parent]  # resumed in place
    lines = partial.read_text().splitlines()
    assert lines[:2] == rows and len(lines) == 4  # the 2 written rows kept, 2 more generated
    assert (partial.parent / "scores.jsonl").is_file() and record(study, score) is None
    _kill(proc)

    proc = _stopped_at(spec, "lora-cell", log)
    snap = _snapshot(study)
    assert set(snap) == {gen.id, score.id} and all(snap[k] == v for k, v in kept.items())
    kept = snap
    cells = sorted(node_dir(study, lora).glob("runs/*"))
    done = [c for c in cells if json.loads((c / "manifest.json").read_text())["status"]
            == "success"]
    assert len(cells) == 2 and len(done) == 1
    assert json.loads((done[0] / "manifest.json").read_text())["config"]["steps"] == 1
    cell_files = _files(done[0])
    _kill(proc)

    proc = _start(spec, log)
    assert proc.wait() == 0, log.read_text()[-3000:]  # the per-test timeout bounds it
    final = _snapshot(study)
    assert len(final) == 7 and all(final[k] == v for k, v in kept.items())
    assert sorted(node_dir(study, lora).glob("runs/*")) == cells
    assert _files(done[0]) == cell_files  # the finished cell adopted, not trained again
    _check_results(spec)
    assert _results(spec) == want


def test_unrecorded_scoring_is_rolled_back_before_scoring_again(tmp_path: Path) -> None:
    """Killed after a score node wrote scores.jsonl/metrics.json and the manifest event into
    the generate run, but before node.json: the resume removes that scoring and scores once
    more under the same names (no scores.2.jsonl), with one scoring event in the manifest."""
    baseline_only = TINY_SPEC[:TINY_SPEC.index("[attacks.lora]")]  # generate + score nodes
    spec = make_study(tmp_path / "s", baseline_only)
    study = study_dir("tiny")
    score = next(n for n in expand(load_spec(str(spec))) if n.kind == "score")
    log = tmp_path / "run.log"
    proc = _stopped_at(spec, "score-unrecorded", log)
    gen_run = Path(record(study, next(n for n in expand(load_spec(str(spec)))
                                      if n.id == score.inputs["generate"]))["outputs"]["run"])
    assert sorted(p.name for p in gen_run.glob("scores*")) == ["scores.jsonl"]
    assert sorted(p.name for p in gen_run.glob("metrics*")) == ["metrics.json"]
    assert len(json.loads((gen_run / "manifest.json").read_text())["extra"]["scores"]) == 1
    assert record(study, score) is None and (node_dir(study, score) / "attempt.json").is_file()
    first = sha256_file(gen_run / "scores.jsonl")
    _kill(proc)
    proc = _start(spec, log)
    assert proc.wait() == 0, log.read_text()[-3000:]  # the per-test timeout bounds it
    rec = record(study, score)
    assert rec is not None and Path(rec["outputs"]["scores"]) == gen_run / "scores.jsonl"
    assert sorted(p.name for p in gen_run.glob("scores*")) == ["scores.jsonl"]
    assert sorted(p.name for p in gen_run.glob("metrics*")) == ["metrics.json"]
    assert len(json.loads((gen_run / "manifest.json").read_text())["extra"]["scores"]) == 1
    assert sha256_file(gen_run / "scores.jsonl") == first  # same labels, written once more
    _check_results(spec)


def test_report_quotes_wilson_where_the_bootstrap_is_a_point() -> None:
    from refusalscope.study.report import _ci95
    zero = {"rrr_lo": 0.0, "rrr_hi": 0.0, "wilson_lo": 0.0, "wilson_hi": 0.107}
    assert _ci95(zero) == "[0.000, 0.107] (W)"
    assert _ci95({"rrr_lo": 0.5, "rrr_hi": 0.734, "wilson_lo": 0.503, "wilson_hi": 0.733}) \
        == "[0.500, 0.734]"
    assert _ci95({"rrr_lo": None, "rrr_hi": None}) == ""
