"""`scoring.factory.scorer`: the one place a scorer is built from its name.

A tiny classifier is trained under the project's default name, then every caller that used to
build its scorers by hand (study score nodes, steering evaluation, `score validate --rescore`,
the classifier's held-out report, `refusalscope score`) is checked to give the scorer, version
and labels the hand-built `EnsembleScorer(load_classifier(NAME), HeuristicScorer())` gives.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.errors import UserError
from refusalscope.scoring.classifier import (DEFAULT_NAME, TrainConfig, classifiers_dir,
                                             load_classifier, tiny_encoder)
from refusalscope.scoring.ensemble import EnsembleScorer
from refusalscope.scoring.factory import scorer
from refusalscope.scoring.heuristic import HeuristicScorer
from refusalscope.scoring.labelled import Example, split_groups

REFUSE = "I'm sorry, I can't help with that."
COMPLY = "Sure, here is a recipe, step {i}: first do that."
PROMPTS = ["how to do 1", "how to do 2", "how to do 3"]
RESPONSES = [REFUSE, COMPLY.format(i=2), "As an AI I must say: step one, mix things."]


def _examples(n: int = 24) -> list[Example]:
    out = []
    for i in range(n):
        out.append(Example(f"how to do {i}", REFUSE, True, "t", f"g{i}", "refusal_words"))
        out.append(Example(f"how to do {i}", COMPLY.format(i=i), False, "t", f"g{i}",
                           "compliance"))
    return out


@pytest.fixture(scope="module")
def _trained_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classifier saved as the project default (module fixtures run before the per-test
    home is set, so the env var is set here)."""
    from refusalscope.scoring.classifier_train import train_classifier

    root = tmp_path_factory.mktemp("clf")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REFUSALSCOPE_HOME", str(root / "home"))
        cfg = TrainConfig(name=DEFAULT_NAME, backbone=str(tiny_encoder(root / "bb", seed=1)),
                          epochs=1, lr=3e-3, batch_size=16, max_length=32, seed=0)
        folder, _ = train_classifier(cfg, split_groups(_examples(), seed=0),
                                     [{"name": "synthetic"}])
        return folder


@pytest.fixture
def trained(_trained_once: Path) -> str:
    shutil.copytree(_trained_once, classifiers_dir() / DEFAULT_NAME)
    return DEFAULT_NAME


def _by_hand() -> EnsembleScorer:
    return EnsembleScorer(load_classifier(DEFAULT_NAME), HeuristicScorer())


def _labels(s) -> list[tuple[bool, str | None]]:  # type: ignore[no-untyped-def]
    return [(lab.refused, lab.matched) for lab in s.score(PROMPTS, RESPONSES)]


def test_names_give_the_hand_built_scorers(trained: str) -> None:
    ens = _by_hand()
    for name, want in (("heuristic", ens.heuristic), ("classifier", ens.classifier),
                       ("ensemble", ens), ("study", ens)):
        for clf in (None, "default", DEFAULT_NAME):
            got = scorer(name, classifier=clf)
            assert (got.name, got.version) == (want.name, want.version), (name, clf)
            assert _labels(got) == _labels(want)
    assert scorer("study", classifier="none").name == "heuristic"
    # a loaded classifier is used as it is (loaded once, shared), with a configured heuristic
    clf, h = load_classifier(DEFAULT_NAME), HeuristicScorer(window=50)
    assert scorer("classifier", classifier=clf) is clf
    both = scorer("ensemble", classifier=clf, heuristic=h)
    assert both.classifier is clf and both.heuristic is h
    with pytest.raises(UserError, match="unknown scorer 'judge'"):
        scorer("judge")


def test_without_a_classifier(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert scorer("study").name == "heuristic"
    assert "heuristic alone" in caplog.text
    for name in ("classifier", "ensemble"):
        with pytest.raises(UserError, match="classifier"):
            scorer(name)


def test_callers_build_through_the_factory(trained: str) -> None:
    """Steering (evaluation and the defense) builds its scorer with the factory itself (no
    wrapper of its own); `score validate --rescore` and the held-out report give what the
    hand-built scorers gave."""
    from refusalscope.interp import steer_eval
    from refusalscope.labels import HumanLabel, now
    from refusalscope.scoring.classifier_train import heldout_report
    from refusalscope.scoring.metrics import binary_report
    from refusalscope.scoring.score import label_outcomes
    from refusalscope.scoring.validate_gold import GoldPair, rescore

    ens = _by_hand()
    assert not hasattr(steer_eval, "make_scorer")
    pairs = [GoldPair(HumanLabel(f"p{i}", "run", "sha", "refused", "ann", now()), p, r)
             for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES, strict=True))]
    rows, notes = rescore(pairs, classifier="default")
    assert notes == []
    for s in (ens.heuristic, ens.classifier, ens):
        want = label_outcomes(s, PROMPTS, RESPONSES)
        got = [rows[f"run/p{i}"][f"{s.name} (now)"] for i in range(len(PROMPTS))]
        assert got == want, s.name
    held = [Example(p, r, i == 0, "t", f"h{i}", "x")
            for i, (p, r) in enumerate(zip(PROMPTS, RESPONSES, strict=True))]
    rep = heldout_report(ens.classifier, held)
    labels = ens.score_all(PROMPTS, RESPONSES)
    assert rep["heldout_metrics"] == {
        k: binary_report([lab.refused for lab in v], [e.refused for e in held])
        for k, v in labels.items()}


def test_cli_score_ensemble_is_the_hand_built_one(trained: str, tmp_path: Path) -> None:
    from refusalscope.cli.app import app

    f = tmp_path / "in.jsonl"
    f.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n"
                         for p, r in zip(PROMPTS, RESPONSES, strict=True)))
    for name, want in (("ensemble", _by_hand()), ("classifier", load_classifier()),
                       ("heuristic", HeuristicScorer())):
        out = tmp_path / name
        res = CliRunner().invoke(app, ["score", "--input", str(f), "--scorer", name,
                                       "--classifier", DEFAULT_NAME, "--out", str(out)])
        assert res.exit_code == 0, res.output
        metrics = json.loads(next(out.glob("metrics*.json")).read_text())
        assert metrics["scorer"]["version"] == want.version
        scores = [json.loads(x) for x in next(out.glob("scores*.jsonl")).read_text().splitlines()]
        assert [r["refused"] for r in scores] == [lab.refused for lab in want.score(PROMPTS,
                                                                                   RESPONSES)]
