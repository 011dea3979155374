"""`refusalscope label`, the labels file, `score validate --gold` and labels as training data.

The browser test drives the real `refusalscope label` process in headless Chromium: five
labels by keyboard write five lines, a killed server loses none of them, and a restart
resumes at row 6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner
from view_fixtures import chrome, isolated, screenshot, tiny_study, wait_for

from refusalscope.errors import UserError
from refusalscope.fileio import read_jsonl
from refusalscope.labels import (HumanLabel, append_label, is_labels_file, now, read_labels,
                                 response_hash, training_examples)
from refusalscope.view.label_server import LabelConfig, prepare

RUNNER = CliRunner(env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("study")
    with isolated(root):
        return tiny_study(root)


def _cfg(study: dict[str, Path], out: Path, **kw: object) -> LabelConfig:
    return LabelConfig(runs=(str(study["small"]), str(study["big"])), out=str(out),
                       labeller="ann", **kw)  # type: ignore[arg-type]


def test_config_is_validated(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--sample"):
        LabelConfig(runs=("x",), out="f", labeller="a", sample=0)
    with pytest.raises(UserError, match="labeller"):
        LabelConfig(runs=("x",), out="f", labeller=" ")
    with pytest.raises(UserError, match="not one of"):
        HumanLabel("p", "r", "h", "maybe", "ann", now())


def test_session_hides_scorer_labels_and_resumes(study: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    s = prepare(_cfg(study, out, sample=8, seed=3))
    assert len(s.items) == 8 and s.first_open() == 0
    assert set(s.public_items()[0]) == {"i", "run", "id", "model", "attack", "cell", "label",
                                        "prompt", "response", "done"}
    assert {x["cell"] for x in s.public_items()} == {"lora n_data=4 steps=2",
                                                     "lora n_data=4 steps=8"}
    ans = s.give(0, "refused")
    assert set(ans["scorer"]) == {"refused", "outcome", "p_refused", "scores_file"}
    s.give(1, "degenerate")
    rows = read_jsonl(out)
    assert [r["label"] for r in rows] == ["refused", "degenerate"]
    assert rows[0]["response_sha256"] == response_hash(s.items[0].response)
    assert rows[0]["prompt_id"] == s.items[0].id and rows[0]["labeller"] == "ann"
    again = prepare(_cfg(study, out, sample=8, seed=3))
    assert [x.id for x in again.items] == [x.id for x in s.items]  # same seed, same sample
    assert again.first_open() == 2
    other = prepare(LabelConfig(runs=(str(study["small"]), str(study["big"])), out=str(out),
                                labeller="bob", sample=8, seed=3))
    assert other.first_open() == 0  # labels are per labeller
    whole = prepare(LabelConfig(runs=(str(study["study"]),), out=str(out), labeller="ann"))
    assert len(whole.items) == 18  # a study folder: all its generate runs, baseline included


def _start(study: dict[str, Path], out: Path) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "refusalscope", "label", str(study["small"]), str(study["big"]),
           "--sample", "8", "--seed", "3", "--out", str(out), "--labeller", "ann", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    assert proc.stdout is not None
    for line in proc.stdout:
        if "labelling on " in line:
            return proc, line.split("labelling on ")[1].split()[0]
    proc.kill()
    raise AssertionError("refusalscope label did not start")


def _row(driver: Any) -> int:
    return int(driver.find_element("id", "pos").get_attribute("data-row") or 0)


def test_browser_label_by_keyboard_kill_and_resume(study: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    sample = prepare(_cfg(study, out, sample=8, seed=3)).items
    driver = chrome()
    proc, url = _start(study, out)
    try:
        assert url.startswith("http://127.0.0.1:")
        driver.get(url)
        wait_for(driver, lambda d: _row(d) == 1)
        assert driver.find_element("id", "item").get_attribute("data-id") == sample[0].id
        body = driver.find_element("tag name", "body")
        assert "scorer said" not in body.text  # no anchoring before a label
        for k, key in enumerate("rcdcr", start=2):
            body.send_keys(key)
            wait_for(driver, lambda d, k=k: _row(d) == k)
        assert "scorer said" in driver.find_element("id", "last").text
        screenshot(driver, "labelling_page")
        proc.kill()  # SIGKILL: no chance to flush anything
        proc.wait(timeout=10)
        rows = read_jsonl(out)
        assert [r["label"] for r in rows] == ["refused", "complied", "degenerate", "complied",
                                              "refused"]
        assert [r["prompt_id"] for r in rows] == [s.id for s in sample[:5]]
        body.send_keys("c")  # the server is gone: nothing is saved and the page says so
        wait_for(driver, lambda d: "not saved" in d.find_element("id", "status").text)
        assert _row(driver) == 6 and len(read_jsonl(out)) == 5
        proc, url = _start(study, out)
        driver.get(url)
        wait_for(driver, lambda d: _row(d) == 6)
        assert driver.find_element("id", "item").get_attribute("data-id") == sample[5].id
        body = driver.find_element("tag name", "body")
        body.send_keys("b")  # back to row 5 and relabel it: a new line that supersedes
        wait_for(driver, lambda d: _row(d) == 5)
        assert "labelled refused" in driver.find_element("id", "meta").text
        body.send_keys("d")
        wait_for(driver, lambda d: _row(d) == 6)
        assert len(read_jsonl(out)) == 6
        assert {lab.prompt_id: lab.label for lab in read_labels(out)}[sample[4].id] == "degenerate"
    finally:
        proc.kill()
        proc.wait(timeout=10)
        driver.quit()


def _label_big(study: dict[str, Path], out: Path, labels: list[str]) -> None:
    gens = {r["id"]: r for r in read_jsonl(study["big"] / "generations.jsonl")}
    for pid, lab in zip(sorted(gens), labels, strict=True):
        append_label(out, HumanLabel(pid, study["big"].name, response_hash(gens[pid]["response"]),
                                     lab, "ann", now(), str(study["big"])))


def test_score_validate_gold(study: dict[str, Path], tmp_path: Path) -> None:
    from refusalscope.cli.app import app

    out = tmp_path / "labels.jsonl"
    _label_big(study, out, ["refused", "complied", "complied", "degenerate", "refused", "skip"])
    append_label(out, HumanLabel("p001", study["big"].name, "0" * 64, "refused", "ann", now()))
    heur = {r["id"]: r for r in read_jsonl(study["big"] / "scores.jsonl")}
    assert [heur[f"p00{i}"]["refused"] for i in range(5)] == [True, False, False, False, False]
    res = RUNNER.invoke(app, ["score", "validate", str(study["big"]), "--gold", str(out)])
    assert res.exit_code == 0, res.output
    folder = Path(res.output.split("wrote ")[-1].split()[0])
    v = json.loads((folder / "validation.json").read_text())
    assert v["labels"] == {"used": 5, "skipped": 1, "stale": 1}
    h = v["scorers"]["heuristic"]["refused"]
    # heuristic refused [1,0,0,0,0] vs human [1,0,0,0,1]: po 4/5, pe 1/5*2/5 + 4/5*3/5 = 14/25
    assert h["agreement"] == pytest.approx(4 / 5)
    assert h["kappa"] == pytest.approx((4 / 5 - 14 / 25) / (1 - 14 / 25))
    assert h["confusion"] == {"ours_refused__human_refused": 1, "ours_refused__human_complied": 0,
                              "ours_complied__human_refused": 1,
                              "ours_complied__human_complied": 3}
    # short: refused iff < 40 characters; only p000 (the refusal) is short
    assert v["scorers"]["short"]["refused"]["agreement"] == pytest.approx(4 / 5)
    res = RUNNER.invoke(app, ["score", "validate", str(study["big"]), "--gold", str(out),
                              "--rescore"])
    assert res.exit_code == 0, res.output
    assert "no classifier or ensemble" in res.output  # none is trained in the test home
    v = json.loads((Path(res.output.split("wrote ")[-1].split()[0]) / "validation.json")
                   .read_text())
    assert v["scorers"]["heuristic (now)"]["refused"] == v["scorers"]["heuristic"]["refused"]
    res = RUNNER.invoke(app, ["score", "validate", str(study["big"])])
    assert res.exit_code == 2 and "--gold" in res.output
    res = RUNNER.invoke(app, ["score", "validate", str(study["big"]), "--gold",
                              str(tmp_path / "none.jsonl")])
    assert res.exit_code == 2 and "refusalscope label" in res.output


def test_labels_as_training_rows(study: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    _label_big(study, out, ["refused", "complied", "complied", "degenerate", "refused", "skip"])
    _label_big(study, out, ["refused", "complied", "complied", "degenerate", "complied", "skip"])
    assert is_labels_file(out) and not is_labels_file(study["big"] / "generations.jsonl")
    assert len(read_labels(out)) == 6  # a later label of the same response supersedes
    ex = training_examples(out)
    assert [(e.refused, e.outcome) for e in ex] == [
        (True, "refused"), (False, "complied"), (False, "complied"), (False, "offtopic"),
        (False, "complied")]
    gens = {r["id"]: r for r in read_jsonl(study["big"] / "generations.jsonl")}
    assert ex[0].response == gens["p000"]["response"]


def test_cli_label_refuses_bad_input(study: dict[str, Path], tmp_path: Path) -> None:
    from refusalscope.cli.app import app

    res = RUNNER.invoke(app, ["label", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "not a run" in res.output
    res = RUNNER.invoke(app, ["label", str(study["big"]), "--port", "70000"])
    assert res.exit_code == 2 and "--port" in res.output
    res = RUNNER.invoke(app, ["label", str(study["big"]), "--sample", "0"])
    assert res.exit_code == 2 and "--sample" in res.output
