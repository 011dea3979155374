"""`refusalscope score validate` and `refusalscope serve`: CliRunner tests."""

from __future__ import annotations

import json
import os
import socket
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.fileio import write_jsonl
from refusalscope.paths import runs_dir
from refusalscope.runs import Run

RUNNER = CliRunner(env={"COLUMNS": "240"})


@pytest.fixture
def app():  # type: ignore[no-untyped-def]
    from refusalscope.cli.app import app

    return app


def make_run(label: str, responses: list[str]) -> Run:
    run = Run.create("generate", {"model": "tiny", "harmless": label == "harmless"},
                     model="tiny", harmful_content=label == "harmful")
    write_jsonl(run.file("generations.jsonl"),
                [{"id": f"{label}{i}", "label": label, "prompt": "p", "response": r}
                 for i, r in enumerate(responses)])
    run.finish("success")
    return run


def validate_runs() -> list[Path]:
    return sorted(p for p in runs_dir().iterdir() if "_validate_" in p.name) \
        if runs_dir().is_dir() else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_validate_local_judge(app, tiny_folder: Path) -> None:  # type: ignore[no-untyped-def]
    a = make_run("harmful", ["I'm sorry, but I can't help with that.", "Sure, step one is"])
    b = make_run("harmless", ["Here is a poem.", "I can't do that."])
    res = RUNNER.invoke(app, ["score", "validate", str(a.path), str(b.path), "--judge",
                              f"local:{tiny_folder}", "--sample", "3",
                              "--judge-max-new-tokens", "4"])
    assert res.exit_code == 0, res.output
    assert "agreement with local:" in res.output and "unparsable judge answers: 3" in res.output
    (run_path,) = validate_runs()
    v = json.loads((run_path / "validation.json").read_text())
    assert v["n_sampled"] == 3 and v["n_unparsable"] == 3


def test_validate_http_judge_via_served_model(app, tiny_folder: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from refusalscope.models.handle import ModelHandle
    from refusalscope.serve import make_server

    server = make_server(ModelHandle.load(str(tiny_folder)), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("RS_JUDGE_KEY", "sk-do-not-print")
    try:
        a = make_run("harmful", ["I'm sorry, but I can't help with that.", "Sure."])
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        res = RUNNER.invoke(app, ["score", "validate", str(a.path), "--judge",
                                  f"openai:{url}#tiny", "--api-key-env", "RS_JUDGE_KEY",
                                  "--judge-max-new-tokens", "4"])
    finally:
        server.shutdown()
        server.server_close()
    assert res.exit_code == 0, res.output
    assert "sk-do-not-print" not in res.output
    (run_path,) = validate_runs()
    for f in run_path.iterdir():
        assert "sk-do-not-print" not in f.read_text()
    rows = [json.loads(x) for x in (run_path / "judgements.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["judge_refused"] is None for r in rows)


def test_validate_harmbench_rubric_one_parsable_verdict(  # type: ignore[no-untyped-def]
        app, fixed_verdicts) -> None:
    """End to end through the CLI with a loopback OpenAI-compatible server answering fixed
    verdicts (the parsing path only: a tiny random model never answers yes or no)."""
    answers, url = fixed_verdicts
    answers += ["no", "Yes, it is."]  # sampled order: the refusal, then the echo
    a = make_run("harmful", ["I'm sorry, but I can't help with that.", "p p p"])
    res = RUNNER.invoke(app, ["score", "validate", str(a.path), "--judge",
                              f"openai:{url}#fixed", "--rubric", "harmbench"])
    assert res.exit_code == 0, res.output
    assert "compared: complied (outcome)" in res.output
    assert "unparsable judge answers: 1" in res.output
    (run_path,) = validate_runs()
    v = json.loads((run_path / "validation.json").read_text())
    assert (v["rubric"], v["n_sampled"], v["n"], v["n_unparsable"]) == ("harmbench", 2, 1, 1)
    assert v["confusion"]["ours_not_complied__judge_not_complied"] == 1 and v["agreement"] == 1.0
    rows = [json.loads(x) for x in (run_path / "judgements.jsonl").read_text().splitlines()]
    assert [r["judge_complied"] for r in rows] == [False, None]
    assert [r["ours_outcome"] for r in rows] == ["refused", "degenerate"]


@pytest.mark.parametrize("args, why", [
    (["--judge", "gpt-judge"], "unknown judge"),
    (["--judge", "local:tiny", "--rubric", "harmbank"], "unknown rubric"),
    (["--judge", "local:tiny", "--sample", "0"], "--sample"),
    (["--judge", "openai:http://127.0.0.1:{port}/v1#m", "--retries", "0"], "unreachable"),
    (["--judge", "openai:http://127.0.0.1:{port}/v1#m", "--api-key-env", "RS_NOPE_KEY"],
     "RS_NOPE_KEY"),
])
def test_validate_bad_input_one_line_exit_2(app, args: list[str], why: str) -> None:  # type: ignore[no-untyped-def]
    os.environ.pop("RS_NOPE_KEY", None)
    a = make_run("harmful", ["I'm sorry."])
    port = _free_port()
    res = RUNNER.invoke(app, ["score", "validate", str(a.path),
                              *[x.replace("{port}", str(port)) for x in args]])
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and why in lines[0]
    assert validate_runs() == []  # nothing written


def test_validate_bad_run_exit_2(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = RUNNER.invoke(app, ["score", "validate", str(tmp_path), "--judge", "local:x"])
    assert res.exit_code == 2 and "not a run folder" in res.output
    assert validate_runs() == []


def test_serve_bad_port_and_busy_port(app, tiny_folder: Path) -> None:  # type: ignore[no-untyped-def]
    res = RUNNER.invoke(app, ["serve", "--model", str(tiny_folder), "--port", "70000"])
    assert res.exit_code == 2 and "--port" in res.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        res = RUNNER.invoke(app, ["serve", "--model", str(tiny_folder), "--port",
                                  str(s.getsockname()[1])])
    assert res.exit_code == 2 and "cannot bind" in res.output
