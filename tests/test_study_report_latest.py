"""`study.report.latest_metrics`: a run re-scored after the study is reported by its latest scoring."""

from __future__ import annotations

import json
from pathlib import Path

from refusalscope.study.report import latest_metrics


def _run(tmp_path: Path, scores: list[dict]) -> Path:
    (tmp_path / "manifest.json").write_text(json.dumps({"extra": {"scores": scores}}))
    for e in scores:
        (tmp_path / e["metrics_file"]).write_text("{}")
    return tmp_path


def test_latest_scoring_by_the_same_scorer_wins(tmp_path: Path) -> None:
    run = _run(tmp_path, [{"scorer": "heuristic", "metrics_file": "metrics.json"},
                          {"scorer": "ensemble", "metrics_file": "metrics.2.json"},
                          {"scorer": "ensemble", "metrics_file": "metrics.3.json"},
                          {"scorer": "heuristic", "metrics_file": "metrics.4.json"}])
    assert latest_metrics(run / "metrics.2.json", "ensemble") == run / "metrics.3.json"
    assert latest_metrics(run / "metrics.json", "heuristic") == run / "metrics.4.json"


def test_falls_back_to_the_node_file(tmp_path: Path) -> None:
    run = _run(tmp_path, [{"scorer": "ensemble", "metrics_file": "metrics.json"}])
    (run / "metrics.json").unlink()  # listed but gone: keep the node's own file
    assert latest_metrics(run / "metrics.2.json", "ensemble") == run / "metrics.2.json"
    assert latest_metrics(run / "metrics.2.json", "classifier") == run / "metrics.2.json"
