"""Agreement, kappa, stratified sampling, and validate runs end to end on a tiny judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refusalscope.errors import UserError
from refusalscope.fileio import write_jsonl
from refusalscope.runs import Run
from refusalscope.scoring.judge import JudgeConfig, LocalJudge
from refusalscope.scoring.rubrics import Verdict
from refusalscope.scoring.validate import (Sampled, ValidateConfig, agreement, best_threshold,
                                           cohen_kappa, load_responses, run_validate,
                                           stratified_sample, summarise)


def test_kappa_and_agreement_hand_computed() -> None:
    # 10 pairs: ours R R R R R R C C C C ; judge R R R R C C R C C C
    ours = [True] * 6 + [False] * 4
    judge = [True] * 4 + [False] * 2 + [True] + [False] * 3
    res = agreement(ours, judge)
    assert res["confusion"] == {"ours_refused__judge_refused": 4, "ours_refused__judge_complied": 2,
                                "ours_complied__judge_refused": 1,
                                "ours_complied__judge_complied": 3}
    assert res["agreement"] == pytest.approx(0.7)
    # pe = 0.6*0.5 + 0.4*0.5 = 0.5 ; kappa = (0.7 - 0.5) / 0.5 = 0.4
    assert res["kappa"] == pytest.approx(0.4)


def test_kappa_edge_cases() -> None:
    assert cohen_kappa([True, False], [True, False]) == pytest.approx(1.0)
    assert cohen_kappa([True, False], [False, True]) == pytest.approx(-1.0)
    assert cohen_kappa([True, True], [True, True]) is None  # chance agreement 1: undefined
    assert cohen_kappa([], []) is None


def _s(i: int, model: str, label: str, refused: bool = False, p: float | None = None,
       matched: str | None = None) -> Sampled:
    return Sampled("run", f"{model}-{label}-{i}", model, "none", label, "q", "r", refused,
                   matched, p, None)


def test_stratified_sample_is_proportional_seeded_and_exact() -> None:
    items = ([_s(i, "a", "harmful") for i in range(60)] + [_s(i, "a", "harmless") for i in range(30)]
             + [_s(i, "b", "harmful") for i in range(10)])
    got = stratified_sample(items, 10, seed=1)
    assert len(got) == 10 and len({g.id for g in got}) == 10
    counts = {k: sum(1 for g in got if g.stratum == k) for k in {g.stratum for g in items}}
    assert counts == {("a", "none", "harmful"): 6, ("a", "none", "harmless"): 3,
                      ("b", "none", "harmful"): 1}
    assert [g.id for g in stratified_sample(items, 10, seed=1)] == [g.id for g in got]
    assert [g.id for g in stratified_sample(items, 10, seed=2)] != [g.id for g in got]
    assert stratified_sample(items, 500, seed=0) == items


def test_best_threshold() -> None:
    p = [0.1, 0.3, 0.35, 0.6, 0.9]
    judge = [False, False, True, True, True]
    th = best_threshold(p, judge)
    assert th["threshold"] == 0.35 and th["agreement"] == 1.0
    assert th["agreement_at_0.5"] == pytest.approx(0.8)


def test_summarise_excludes_unparsable_and_reports_phrases() -> None:
    items = [_s(0, "a", "harmful", True, matched="refusalscope:I can't"),
             _s(1, "a", "harmful", True, matched="refusalscope:As an AI"),
             _s(2, "a", "harmful", False), _s(3, "a", "harmful", False)]
    verdicts = [Verdict(True), Verdict(False), Verdict(None, error="x"), Verdict(True)]
    out = summarise(items, verdicts)
    assert out["n_sampled"] == 4 and out["n_unparsable"] == 1 and out["n"] == 3
    assert out["agreement"] == pytest.approx(1 / 3)
    assert out["threshold"] == {"kind": "phrases",
                                "false_refusal_matches": {"refusalscope:As an AI": 1},
                                "judge_refusals_without_match": 1}
    assert {d["id"] for d in out["disagreements"]} == {"a-harmful-1", "a-harmful-3"}


def _make_run(n: int, harmless: bool, responses: list[str], scores: bool) -> Run:
    run = Run.create("generate", {"model": "tiny", "harmless": harmless, "n": n}, model="tiny",
                     harmful_content=not harmless)
    label = "harmless" if harmless else "harmful"
    write_jsonl(run.file("generations.jsonl"), (
        {"id": f"{label}-{i}", "label": label, "prompt": f"request {i}", "response": r}
        for i, r in enumerate(responses)))
    if scores:  # an older and a newer scores file: the newer (scores.2) must be read
        write_jsonl(run.file("scores.jsonl"), ({"id": f"{label}-{i}", "refused": True,
                                                "matched": "old"} for i in range(n)))
        write_jsonl(run.file("scores.2.jsonl"), ({"id": f"{label}-{i}", "refused": i % 2 == 0,
                                                  "matched": None, "p_refused": i / n}
                                                 for i in range(n)))
    run.finish("success")
    return run


def test_load_responses_latest_scores_or_heuristic() -> None:
    a = _make_run(4, False, ["I'm sorry, but I can't help with that."] * 2 + ["Sure: step 1"] * 2,
                  scores=True)
    b = _make_run(2, True, ["I'm sorry, but I can't help with that.", "Here you go."], scores=False)
    la = load_responses(a.path)
    assert [s.refused for s in la] == [True, False, True, False]
    assert [s.p_refused for s in la] == [0.0, 0.25, 0.5, 0.75] and la[0].scores_file == "scores.2.jsonl"
    lb = load_responses(b.path)
    assert [s.refused for s in lb] == [True, False] and lb[0].scores_file is None


def test_run_validate_writes_run_with_unparsable_garbage() -> None:
    from refusalscope.models.tiny import tiny_handle

    a = _make_run(6, False, ["I'm sorry, but I can't."] * 3 + ["Sure, here it is."] * 3, False)
    b = _make_run(4, True, ["Here is a poem about the sea."] * 4, False)
    cfg = ValidateConfig(runs=(str(a.path), str(b.path)),
                         judge=JudgeConfig("local:tiny", max_new_tokens=4), sample=5, seed=0)
    res = run_validate(cfg, LocalJudge(tiny_handle(seed=1), batch_size=2))
    run = Run.open(res.run.path)
    assert run.manifest.status == "success" and run.manifest.command == "validate"
    assert run.manifest.content_warning and sorted(run.manifest.input_runs) == sorted([a.id, b.id])
    rows = [json.loads(x) for x in run.file("judgements.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and {r["label"] for r in rows} == {"harmful", "harmless"}
    assert all(r["judge_refused"] is None and r["judge_error"] for r in rows)  # random model
    v = json.loads(run.file("validation.json").read_text())
    assert v["n_unparsable"] == 5 and v["n"] == 0 and v["agreement"] is None
    assert ValidateConfig.from_dict(run.manifest.config) == cfg


def test_bad_inputs() -> None:
    with pytest.raises(UserError, match="at least one run"):
        ValidateConfig(runs=(), judge=JudgeConfig("local:x"))
    with pytest.raises(UserError, match="--sample"):
        ValidateConfig(runs=("r",), judge=JudgeConfig("local:x"), sample=0)
    with pytest.raises(UserError, match="not a run folder"):
        load_responses("/nonexistent/run")


def test_summarise_harmbench_compares_our_outcome_complied() -> None:
    from dataclasses import replace

    items = [replace(_s(0, "a", "harmful"), outcome="complied"),
             replace(_s(1, "a", "harmful"), outcome="degenerate"),  # not refused, not complied
             replace(_s(2, "a", "harmful", True), outcome="refused"),
             replace(_s(3, "a", "harmful"), outcome="degenerate")]
    yes, no = Verdict(False, {"harmbench": 1.0}, complied=True), \
        Verdict(True, {"harmbench": 0.0}, complied=False)
    out = summarise(items, [yes, no, no, yes], rubric="harmbench")
    assert out["compared"] == "complied (outcome)" and out["n"] == 4
    assert out["confusion"] == {"ours_complied__judge_complied": 1,
                                "ours_complied__judge_not_complied": 0,
                                "ours_not_complied__judge_complied": 1,
                                "ours_not_complied__judge_not_complied": 2}
    assert out["agreement"] == pytest.approx(0.75) and "threshold" not in out
    assert [d["id"] for d in out["disagreements"]] == ["a-harmful-3"]
    # the refusal rubric's view of the same rows: row 1 is ours complied, judge refused
    assert summarise(items, [yes, no, no, yes])["confusion"]["ours_complied__judge_refused"] == 1


def test_summarise_strongreject_adds_compliance_and_score_by_outcome() -> None:
    from dataclasses import replace

    items = [replace(_s(0, "a", "harmful"), outcome="complied"),
             replace(_s(1, "a", "harmful"), outcome="degenerate"),
             replace(_s(2, "a", "harmful", True), outcome="refused")]
    verdicts = [Verdict(False, {"strongreject": 0.875}, complied=True),
                Verdict(False, {"strongreject": 0.125}, complied=False),
                Verdict(True, {"strongreject": 0.0}, complied=False)]
    out = summarise(items, verdicts, rubric="strongreject")
    assert out["compared"] == "refused" and out["agreement"] == 1.0
    assert out["compliance"]["agreement"] == 1.0
    assert out["strongreject_by_outcome"] == {"complied": {"n": 1, "mean": 0.875},
                                              "degenerate": {"n": 1, "mean": 0.125},
                                              "refused": {"n": 1, "mean": 0.0}}
