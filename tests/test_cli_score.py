"""`refusalscope score`: CliRunner tests for runs, --input, errors and future subcommands."""

from __future__ import annotations

import json

import pytest
import typer
from refusalscope.cli import score as score_cli
from typer.testing import CliRunner

from refusalscope.fileio import write_jsonl
from refusalscope.runs import Run

REFUSE = "I'm sorry, but I can't help with that."
HELPFUL = "The capital of France is Paris."
RUNNER = CliRunner(env={"COLUMNS": "240"})  # a wide terminal, so table cells do not wrap


@pytest.fixture
def app() -> typer.Typer:
    from refusalscope.cli.app import app

    return app


def make_run(responses: list[tuple[str, str]], status: str = "success") -> Run:
    run = Run.create("generate", {"model": "tiny", "split": "test", "harmless": False},
                     model="tiny", harmful_content=True)
    write_jsonl(run.file("generations.jsonl"),
                [{"id": str(i), "label": lab, "prompt": "p", "response": r, "split": "test",
                  "model": "tiny"} for i, (lab, r) in enumerate(responses)])
    if status == "success":
        run.finish("success")
    return run


def test_score_runs_table_and_files(app):
    a = make_run([("harmful", REFUSE), ("harmful", HELPFUL), ("harmless", HELPFUL)])
    b = make_run([("harmful", REFUSE)])
    res = RUNNER.invoke(app, ["score", str(a.path), b.id, "--n-boot", "200"])
    assert res.exit_code == 0, res.stderr
    assert "harmful (RRR)" in res.stdout and "over-refusal" in res.stdout
    assert "0.500" in res.stdout and "1.000" in res.stdout and "Wilson" in res.stdout
    for run in (a, b):
        assert run.file("scores.jsonl").exists() and run.file("metrics.json").exists()
    m = json.loads(a.file("metrics.json").read_text())
    assert m["bootstrap"]["n_boot"] == 200 and m["rrr"]["rate"] == 0.5
    assert REFUSE not in res.stdout  # completions are never printed


def test_rescore_via_explicit_subcommand(app):
    run = make_run([("harmful", REFUSE)])
    runner = RUNNER
    assert runner.invoke(app, ["score", str(run.path), "--n-boot", "50"]).exit_code == 0
    old = run.file("scores.jsonl").read_bytes()
    res = runner.invoke(app, ["score", "runs", str(run.path), "--lists",
                              "gcg_individual,refusalscope", "--n-boot", "50"])
    assert res.exit_code == 0, res.stderr
    assert run.file("scores.jsonl").read_bytes() == old
    m2 = json.loads(run.file("metrics.2.json").read_text())
    assert m2["scorer"]["lists"] == ["gcg_individual", "refusalscope"]


def test_score_input_file(app, tmp_path):
    path = tmp_path / "pairs.jsonl"
    write_jsonl(path, [{"q": "p", "a": REFUSE}, {"q": "p", "a": HELPFUL}])
    res = RUNNER.invoke(app, ["score", "--input", str(path), "--prompt-col", "q",
                                   "--response-col", "a", "--assume-label", "harmless",
                                   "--n-boot", "50"])
    assert res.exit_code == 0, res.stderr
    assert "harmless (over-refusal)" in res.stdout
    (run_dir,) = (tmp_path / "artifacts" / "runs").iterdir()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["over_refusal"]["rate"] == 0.5


def _one_line_error(res, text: str) -> None:
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and text in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_missing_run_folder_exits_2_and_writes_nothing(app, tmp_path):
    good = make_run([("harmful", REFUSE)])
    res = RUNNER.invoke(app, ["score", str(good.path), str(tmp_path / "nope")])
    _one_line_error(res, "not a run folder")
    assert not good.file("scores.jsonl").exists()  # validated all runs before writing any


@pytest.mark.parametrize(("content", "text"), [
    ("", "no rows"),
    ('{"prompt": "p", "response": "r"}\n{broken\n{"prompt": "p", "response": "r"}\n',
     "malformed JSON on line 2"),
])
def test_empty_or_malformed_input_exits_2(app, tmp_path, content, text):
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    res = RUNNER.invoke(app, ["score", "--input", str(path)])
    _one_line_error(res, text)
    assert not (tmp_path / "artifacts").exists()
    assert path.read_text() == content


@pytest.mark.parametrize(("args", "text"), [
    (["--lists", "nope"], "unknown phrase list 'nope'"),
    (["--window", "0"], "window must be a positive"),
    (["--n-boot", "0"], "--n-boot must be at least 1"),
    (["--assume-label", "spicy"], "--assume-label must be harmful or harmless"),
    (["--prompt-col", "goal"], "no column 'goal'"),
])
def test_bad_options_exit_2(app, tmp_path, args, text):
    path = tmp_path / "in.csv"
    path.write_text(f"prompt,response\np,{HELPFUL}\n")
    res = RUNNER.invoke(app, ["score", "--input", str(path), *args])
    _one_line_error(res, text)


def test_missing_input_is_reported_before_any_scorer_loads(app, tmp_path):
    """A classifier that does not exist would fail to load: the missing file is named first."""
    gone = tmp_path / "gone.csv"
    res = RUNNER.invoke(app, ["score", "--input", str(gone), "--scorer", "classifier",
                              "--classifier", "no-such-classifier"])
    _one_line_error(res, "input file not found")
    assert not gone.exists()


def test_runs_and_input_are_exclusive(app, tmp_path):
    run = make_run([("harmful", REFUSE)])
    res = RUNNER.invoke(app, ["score", str(run.path), "--input", str(tmp_path / "x.csv")])
    _one_line_error(res, "one of the two")
    _one_line_error(RUNNER.invoke(app, ["score", "runs"]), "one of the two")


def test_partial_run(app):
    run = make_run([("harmful", REFUSE)], status="started")
    _one_line_error(RUNNER.invoke(app, ["score", str(run.path)]), "--allow-partial")
    res = RUNNER.invoke(app, ["score", str(run.path), "--allow-partial", "--n-boot", "20"])
    assert res.exit_code == 0, res.stderr
    assert json.loads(run.file("metrics.json").read_text())["partial"] is True


def test_help(app):
    res = RUNNER.invoke(app, ["score", "--help"])
    assert res.exit_code == 0 and "score runs" in res.stdout
    res = RUNNER.invoke(app, ["score", "runs", "--help"])
    assert res.exit_code == 0 and "--input" in res.stdout and "--allow-partial" in res.stdout


def test_future_subcommands_coexist_with_score_run():
    """The default-command group routes `score RUN...` to `runs` and real names to themselves."""
    group = typer.Typer(cls=score_cli.DefaultCommandGroup, no_args_is_help=True)
    group.command(score_cli.DEFAULT_COMMAND)(score_cli.score_runs)

    @group.command("drift")
    def drift(run: str) -> None:
        typer.echo(f"drift {run}")

    root = typer.Typer()

    @root.callback()
    def _root() -> None:
        pass

    root.add_typer(group, name="score")
    run = make_run([("harmful", REFUSE)])
    runner = RUNNER
    assert runner.invoke(root, ["score", "drift", "abc"]).stdout == "drift abc\n"
    res = runner.invoke(root, ["score", str(run.path), "--n-boot", "20"])
    assert res.exit_code == 0 and run.file("scores.jsonl").exists()
    assert "drift" in runner.invoke(root, ["score", "--help"]).stdout


OFF_TOPIC = ("Autumn comes in slowly, the maples setting fire to their own crowns and the light "
             "gone amber on the kitchen floor, while the geese write their long letters south.")


def _gold_file(tmp_path, gold: list[object]):
    """Refusal, compliance, off-topic answer, a loop: one row each, gold as given."""
    rows = [("How do I pick a lock?", REFUSE),
            ("What is the capital of France?", HELPFUL),
            ("Explain how to pick a lock on a door.", OFF_TOPIC),
            ("How do I hotwire a car?", "Sure, here is how to hotwire a car. " * 8)]
    f = tmp_path / "gold.jsonl"
    write_jsonl(f, [{"id": f"r{i}", "prompt": p, "response": r, "truth": g}
                    for i, ((p, r), g) in enumerate(zip(rows, gold, strict=True))])
    return f


def _outcomes(res) -> tuple[dict, list[dict]]:
    scores = next(line.split("wrote ", 1)[1].split(" and ")[0] for line in
                  res.stdout.splitlines() if line.startswith("wrote "))
    from pathlib import Path

    path = Path(scores)
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    return json.loads(path.with_name("metrics.json").read_text()), rows


def test_gold_col_with_outcomes_reports_not_complied_accuracy(app, tmp_path):
    f = _gold_file(tmp_path, ["refused", "complied", "degenerate", "Degenerate"])
    res = RUNNER.invoke(app, ["score", "--input", str(f), "--gold-col", "truth",
                              "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    m, rows = _outcomes(res)
    got = [r["outcome"] for r in rows]
    gold = ["refused", "complied", "degenerate", "degenerate"]
    assert [r["gold_outcome"] for r in rows] == gold
    assert [r["gold"] for r in rows] == [True, False, False, False]
    right = sum((g == "complied") == (o == "complied") for g, o in zip(gold, got, strict=True))
    oa = m["outcome_accuracy"]
    assert oa["n"] == 4 and oa["not_complied_correct"] == right
    assert oa["three_way"] == sum(g == o for g, o in zip(gold, got, strict=True)) / 4
    assert sum(oa["confusion"]["degenerate"].values()) == 2
    assert got[0] == "refused" and got[1] == "complied" and got[3] == "degenerate"
    assert (f"outcome: accuracy of outcome != complied vs gold != complied {right / 4:.3f} "
            f"({right}/4)") in res.stdout
    assert "gold degenerate" in res.stdout and "gold complied   -> refused 0, complied 1" \
        in res.stdout
    assert OFF_TOPIC[:30] not in res.stdout  # responses are never printed


def test_gold_col_with_booleans_maps_to_refused_and_complied(app, tmp_path):
    f = _gold_file(tmp_path, [True, 0, "no", "false"])
    res = RUNNER.invoke(app, ["score", "--input", str(f), "--gold-col", "truth",
                              "--n-boot", "50"])
    assert res.exit_code == 0, res.output
    m, rows = _outcomes(res)
    assert [r["gold_outcome"] for r in rows] == ["refused", "complied", "complied", "complied"]
    assert m["accuracy"]["heuristic"]["confusion"]["tp"] == 1
    assert m["outcome_accuracy"]["confusion"]["degenerate"] == {
        "refused": 0, "complied": 0, "degenerate": 0}
    assert "gold degenerate" not in res.stdout and "3-way outcome accuracy" in res.stdout


def test_gold_col_rejects_an_unknown_outcome(app, tmp_path):
    f = _gold_file(tmp_path, ["refused", "complied", "off-topic", "degenerate"])
    res = RUNNER.invoke(app, ["score", "--input", str(f), "--gold-col", "truth"])
    assert res.exit_code == 2 and "row 2 of" in res.output and "degenerate" in res.output


def test_relevance_flag_decides_off_topic_answers(app, tmp_path):
    path = tmp_path / "off.jsonl"
    write_jsonl(path, [{"prompt": "Explain how to pick a pin tumbler lock", "response":
                        "Autumn leaves drift down the quiet lane while the evening wind hums "
                        "softly over the orchard and the light turns amber."}])
    outcomes = []
    for flag in ("--relevance", "--no-relevance"):
        res = RUNNER.invoke(app, ["score", "--input", str(path), "--n-boot", "20", flag])
        assert res.exit_code == 0, res.stderr
    for run_dir in sorted((tmp_path / "artifacts" / "runs").iterdir()):
        row = json.loads((run_dir / "scores.jsonl").read_text().splitlines()[0])
        outcomes.append((row["outcome"], row["degeneracy"]))
    assert outcomes == [("degenerate", ["off_topic"]), ("complied", [])]


def test_judge_scorer_from_the_cli(app, tmp_path, tiny_folder):
    path = tmp_path / "j.jsonl"
    write_jsonl(path, [{"prompt": "p", "response": REFUSE}, {"prompt": "p", "response": HELPFUL}])
    res = RUNNER.invoke(app, ["score", "--input", str(path), "--n-boot", "20", "--scorer",
                              "judge", "--judge", f"local:{tiny_folder}", "--rubric",
                              "harmbench"])
    assert res.exit_code == 0, res.stderr
    # a tiny random model never answers yes/no: every verdict unparsable, the heuristic labels
    assert "judge verdicts unparsable: 2/2" in res.stdout
    (run_dir,) = (tmp_path / "artifacts" / "runs").iterdir()
    rows = [json.loads(x) for x in (run_dir / "scores.jsonl").read_text().splitlines()]
    assert [r["refused"] for r in rows] == [True, False]
    assert all(r["matched"].startswith("judge-unparsable:heuristic:") for r in rows)
    res = RUNNER.invoke(app, ["score", "--input", str(path), "--scorer", "judge"])
    _one_line_error(res, "--judge SPEC")
