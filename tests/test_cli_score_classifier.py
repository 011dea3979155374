"""`refusalscope score train-classifier` and `score --scorer classifier|ensemble --gold-col`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from refusalscope.scoring.classifier import classifiers_dir, tiny_encoder

RUNNER = CliRunner(env={"COLUMNS": "240"})
REFUSE = "I'm sorry, I can't help with that."
COMPLY = "Sure, here is a recipe, step {i}: first do that."


@pytest.fixture
def app() -> typer.Typer:
    from refusalscope.cli.app import app

    return app


def _labelled(path: Path, n: int, gold: str = "refused") -> Path:
    rows = []
    for i in range(n):
        rows.append({"prompt": f"how to do {i}", "response": REFUSE, gold: "refused"})
        rows.append({"prompt": f"how to do {i}", "response": COMPLY.format(i=i),
                     gold: "complied"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def trained(app: typer.Typer, tmp_path: Path) -> str:
    backbone = tiny_encoder(tmp_path / "bb", seed=1)
    data = _labelled(tmp_path / "train.jsonl", 40)
    res = RUNNER.invoke(app, ["score", "train-classifier", "--backbone", str(backbone),
                              "--data", str(data), "--no-pyrit", "--pairs", "--name", "tiny-cli",
                              "--epochs", "4", "--lr", "3e-3", "--max-len", "32"])
    assert res.exit_code == 0, res.output
    assert "held-out" in res.output and "ensemble" in res.output and "ECE" in res.output
    assert "per class" in res.output and "moralising" in res.output and "CPU-s" in res.output
    return "tiny-cli"


def test_train_then_score_with_gold(app: typer.Typer, trained: str, tmp_path: Path) -> None:
    card = json.loads((classifiers_dir() / trained / "card.json").read_text())
    assert card["sources"][0]["name"] == "file:train.jsonl" and card["sources"][0]["n"] == 80
    assert card["head"] == "outcome" and card["config"]["head"] == "outcome"
    # the file's requests got generated rows and off-topic pairs, recorded with their hash
    names = [s["name"] for s in card["sources"]]
    assert names == ["file:train.jsonl", "handwritten", "offtopic_pairs", "generated"]
    src = {s["name"]: s for s in card["sources"]}
    assert src["handwritten"]["n"] == 3687  # A-M 1,387, N-P 516, Q 232, T 374, R-T3 1,178
    gen = src["generated"]
    assert len(gen["sha256"]) == 64 and gen["n"]["moralising"] > 0
    assert card["splits"]["train"]["outcomes"]["offtopic"] > 0
    eval_file = _labelled(tmp_path / "eval.jsonl", 3, gold="truth")
    res = RUNNER.invoke(app, ["score", "--input", str(eval_file), "--scorer", "ensemble",
                              "--classifier", trained, "--gold-col", "truth", "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    assert "heuristic: accuracy 1.000" in res.output and "ensemble: accuracy" in res.output
    assert "CE " in res.output and "bits" in res.output
    metrics_files = list(Path(tmp_path / "artifacts").rglob("metrics.json"))
    m = json.loads(metrics_files[0].read_text())
    assert set(m["accuracy"]) == {"heuristic", "classifier", "ensemble"}
    assert m["scorer"]["classifier"]["version"].startswith("tiny-cli@")


def test_unknown_classifier_is_one_line_exit_2(app: typer.Typer, tmp_path: Path) -> None:
    f = _labelled(tmp_path / "e.jsonl", 1)
    res = RUNNER.invoke(app, ["score", "--input", str(f), "--scorer", "classifier",
                              "--classifier", "nope"])
    assert res.exit_code == 2 and "unknown classifier 'nope'" in res.output


@pytest.mark.parametrize("args,msg", [
    (["--scorer", "magic"], "unknown scorer 'magic'"),
    (["--gold-col", "missing"], "no column 'missing'"),
    (["--gold-col", "bad"], "row 0 of"),
])
def test_bad_input_is_one_line_exit_2(app: typer.Typer, tmp_path: Path, args: list[str],
                                      msg: str) -> None:
    f = tmp_path / "in.jsonl"
    f.write_text(json.dumps({"prompt": "p", "response": "r", "bad": "maybe"}) + "\n")
    res = RUNNER.invoke(app, ["score", "--input", str(f), *args])
    assert res.exit_code == 2, res.output
    assert msg in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "artifacts" / "runs").exists() or \
        not list((tmp_path / "artifacts" / "runs").rglob("scores.jsonl"))


def test_empty_input_and_empty_training_data(app: typer.Typer, tmp_path: Path) -> None:
    f = tmp_path / "empty.jsonl"
    f.write_text("")
    res = RUNNER.invoke(app, ["score", "--input", str(f), "--gold-col", "x"])
    assert res.exit_code == 2 and "no rows" in res.output
    res = RUNNER.invoke(app, ["score", "train-classifier", "--no-pyrit", "--no-handwritten"])
    assert res.exit_code == 2 and "no training data" in res.output
    assert not classifiers_dir().exists() or not list(classifiers_dir().iterdir())


def test_refusal_head_without_generated_rows(app: typer.Typer, tmp_path: Path) -> None:
    backbone = tiny_encoder(tmp_path / "bb", seed=1)
    data = _labelled(tmp_path / "train.jsonl", 30)
    res = RUNNER.invoke(app, ["score", "train-classifier", "--backbone", str(backbone),
                              "--data", str(data), "--no-pyrit", "--no-handwritten",
                              "--no-generated", "--head",
                              "refusal", "--name", "tiny-r", "--epochs", "1",
                              "--max-len", "16", "--max-train-rows", "20"])
    assert res.exit_code == 0, res.output
    card = json.loads((classifiers_dir() / "tiny-r" / "card.json").read_text())
    assert card["labels"] == {"0": "complied", "1": "refused"}
    assert [s["name"] for s in card["sources"]] == ["file:train.jsonl"]
    assert card["training"]["rows"] == 20 < card["training"]["rows_available"]
    res = RUNNER.invoke(app, ["score", "train-classifier", "--no-pyrit", "--data", str(data),
                              "--head", "five"])
    assert res.exit_code == 2 and "head must be one of" in res.output
