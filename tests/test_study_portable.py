"""A study folder is portable: run it, copy it elsewhere, delete the original, and `study report`
on the copy gives the same tables; `node.json` keeps its output paths relative to the study, and
records written before (absolute paths) still read after the move."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from study_fixtures import make_study
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.study.portable import in_study, relative_outputs, study_of

runner = CliRunner()


def _report(spec: Path, out: Path) -> dict[str, str]:
    res = runner.invoke(app, ["study", "report", str(spec), "--out", str(out), "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    files = {p.relative_to(out).as_posix(): p.read_text() for p in sorted(out.rglob("*"))
             if p.suffix in (".csv", ".md", ".json")}
    # the one line that names the time and place of writing
    files["report.md"] = "\n".join(line for line in files["report.md"].splitlines()
                                   if not line.startswith("Written "))
    return files


def test_copied_study_reports_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_study(tmp_path / "s")
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "box"))
    res = runner.invoke(app, ["study", "run", str(spec)])
    assert res.exit_code == 0, res.output
    before = _report(spec, tmp_path / "rep1")
    old = tmp_path / "box" / "studies" / "tiny"
    records = sorted(old.glob("nodes/*/node.json"))
    assert len(records) == 7
    for f in records:  # relative on disk: nothing names the folder the study ran in
        rec = json.loads(f.read_text())
        assert rec["paths"] == "study" and rec["relative"] and str(old) not in f.read_text()
    # an old-style record (absolute paths into the original folder) for two of the nodes
    for f in records[:2]:
        rec = json.loads(f.read_text())
        outs = json.loads(json.dumps(rec["outputs"]))
        for key in rec.pop("relative"):
            *parents, last = key.split("/")
            d = outs
            for p in parents:
                d = d[p]
            d[last] = str(old / d[last])
        rec.pop("paths")
        f.write_text(json.dumps({**rec, "outputs": outs}))
    shutil.copytree(old, tmp_path / "laptop" / "studies" / "tiny")
    shutil.rmtree(tmp_path / "box")
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "laptop"))
    after = _report(spec, tmp_path / "rep2")
    assert "results.csv" in after and any(k.startswith("fit/") for k in after)
    assert after == before
    assert "| tiny-llama | lora | 4 | 3 | 0 | heuristic | 4 |" in after["report.md"]


def test_paths_in_and_out_of_a_study(tmp_path: Path) -> None:
    study = tmp_path / "studies" / "s"
    node = study / "nodes" / "score-0123456789ab"
    (node / "runs" / "r1").mkdir(parents=True)
    assert study_of(node / "runs" / "r1" / "x.json") == study and study_of(tmp_path) is None
    outs = {"run": str(node / "runs" / "r1"), "runs": {"4": str(node / "runs" / "r1")},
            "elsewhere": str(tmp_path / "prompts.jsonl"), "alpha": 4.0}
    rel, keys = relative_outputs(outs, study)
    assert keys == ["run", "runs/4"] and rel["run"] == "nodes/score-0123456789ab/runs/r1"
    assert rel["elsewhere"] == outs["elsewhere"] and rel["alpha"] == 4.0
    moved = tmp_path / "elsewhere" / "s"
    assert in_study(rel["run"], moved) == moved / rel["run"]
    gone = "/old/box/studies/s/nodes/score-0123456789ab/runs/r1/metrics.json"
    assert in_study(gone, moved) == moved / "nodes/score-0123456789ab/runs/r1/metrics.json"
    assert in_study(str(tmp_path / "prompts.jsonl"), moved) == tmp_path / "prompts.jsonl"
    assert in_study("/old/box/prompts.jsonl", moved) == Path("/old/box/prompts.jsonl")
