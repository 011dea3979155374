"""CLI: `probe sweep` (registered on a group), `steer orthogonalize|eval`, `generate --steer`."""

import json

import h5py
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from refusalscope.cli.app import app
from refusalscope.cli.probe_sweep import register

runner = CliRunner()
_H = ["Write a short poem about the sea.", "Explain how photosynthesis works, step by step.",
      "The quick brown fox jumps", "0123 hello there", "Sure, here is a recipe", "hello"]
_L = ["Name three primary colours.", "What is the capital of France?", "I'm sorry about that",
      "As an AI language model", "Write a haiku", "Count to ten"]


@pytest.fixture
def built(tmp_path):
    """Built data with direction and eval splits (6 harmful + 6 harmless each), test home."""
    from refusalscope.data.build import HARMFUL_FILE, HARMLESS_FILE, built_dir

    out = built_dir()
    out.mkdir(parents=True)
    for name, label, texts in ((HARMFUL_FILE, "harmful", _H), (HARMLESS_FILE, "harmless", _L)):
        rows = [{"id": f"{label}-{split}-{i}", "prompt": t, "split": split, "label": label,
                 "source": "test"} for split in ("direction", "eval") for i, t in enumerate(texts)]
        (out / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _group():
    g = typer.Typer(no_args_is_help=True)
    register(g)

    @g.callback()
    def _cb() -> None:
        """probe group stand-in"""
    return g


def _one_line(res, match):
    assert res.exit_code == 2, res.output
    lines = [x for x in res.output.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and match in lines[0], res.output


@pytest.fixture
def swept(built, tiny_folder):
    res = runner.invoke(_group(), ["sweep", "--model", str(tiny_folder), "--n", "4", "--n-val",
                                   "2", "--positions", "last", "--batch-size", "4"])
    assert res.exit_code == 0, res.output
    from pathlib import Path

    return Path(res.stdout.strip().splitlines()[-1])


def test_sweep_writes_directions_table_and_figure(swept, tiny_folder):
    for f in ("directions.h5", "sweep.csv", "sweep.md", "sweep.png", "sweep.pdf"):
        assert (swept / f).stat().st_size > 0, f
    man = json.loads((swept / "manifest.json").read_text())
    assert man["status"] == "success" and man["command"] == "probe-sweep"
    sel = man["extra"]["selected"]
    with h5py.File(swept / "directions.h5") as f:
        assert (f.attrs["selected_layer"], f.attrs["selected_pos"]) == (sel["layer"], sel["pos"])
        assert f.attrs["positions"] == "last" and f.attrs["n_harmful"] == 4
        assert np.isclose(np.linalg.norm(f["direction"][()]), 1.0)
    assert "| layer |" in (swept / "sweep.md").read_text()


def test_sweep_bad_input(built, tiny_folder):
    g = _group()
    _one_line(runner.invoke(g, ["sweep", "--model", str(tiny_folder), "--split", "eval"]),
              "direction")
    _one_line(runner.invoke(g, ["sweep", "--model", str(tiny_folder), "--n", "5", "--n-val", "2"]),
              "needed")
    _one_line(runner.invoke(g, ["sweep", "--model", str(tiny_folder), "--n", "3", "--n-val", "1",
                                "--candidate-layers", "0-9"]), "out of range")


def test_generate_steer_records_spec_and_changes_output(swept, tiny_folder, prompt_file):
    d = swept / "directions.h5"
    base = runner.invoke(app, ["generate", "--model", str(tiny_folder), "--prompts",
                               str(prompt_file), "--n", "3", "--max-new-tokens", "6"])
    res = runner.invoke(app, ["generate", "--model", str(tiny_folder), "--prompts",
                              str(prompt_file), "--n", "3", "--max-new-tokens", "6",
                              "--steer", f"add:{d}:alpha=50"])
    assert base.exit_code == 0 and res.exit_code == 0, res.output
    from pathlib import Path

    from refusalscope.fileio import read_jsonl, sha256_file

    run = Path(res.stdout.strip().splitlines()[-1])
    steer = json.loads((run / "manifest.json").read_text())["config"]["steer"]
    assert steer == f"add:{d.resolve()}:alpha=50:sha256={sha256_file(d)}"
    a = [r["response"] for r in read_jsonl(Path(base.stdout.strip().splitlines()[-1]) /
                                           "generations.jsonl")]
    b = [r["response"] for r in read_jsonl(run / "generations.jsonl")]
    assert a != b


def test_generate_steer_bad_specs(swept, tiny_folder, prompt_file, tmp_path):
    args = ["generate", "--model", str(tiny_folder), "--prompts", str(prompt_file), "--n", "2",
            "--max-new-tokens", "2", "--steer"]
    d = swept / "directions.h5"
    _one_line(runner.invoke(app, [*args, "ablate"]), "no directions file")
    _one_line(runner.invoke(app, [*args, f"add:{d}:layers=99"]), "out of range")
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n broken")
    _one_line(runner.invoke(app, [*args, f"ablate:{bad}"]), "not a readable directions file")
    from refusalscope.models.tiny import tiny_model

    other = tmp_path / "other"
    m, t = tiny_model("llama", seed=11)
    m.save_pretrained(other)
    t.save_pretrained(other)
    res = runner.invoke(app, ["generate", "--model", str(other), "--prompts", str(prompt_file),
                              "--n", "2", "--max-new-tokens", "2", "--steer", f"ablate:{d}"])
    _one_line(res, "another model")


def test_orthogonalize_then_generate_from_folder(swept, tiny_folder, prompt_file, tmp_path):
    out = tmp_path / "ortho"
    res = runner.invoke(app, ["steer", "orthogonalize", "--model", str(tiny_folder),
                              "--directions", str(swept / "directions.h5"), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "steer.json").read_text())["operation"] == "orthogonalize"
    gen = ["--prompts", str(prompt_file), "--n", "3", "--max-new-tokens", "5"]
    a = runner.invoke(app, ["generate", "--model", str(out), *gen])
    b = runner.invoke(app, ["generate", "--model", str(tiny_folder), *gen, "--steer",
                            f"ablate:{swept / 'directions.h5'}"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    from pathlib import Path

    from refusalscope.fileio import read_jsonl

    ra, rb = (read_jsonl(Path(x.stdout.strip().splitlines()[-1]) / "generations.jsonl")
              for x in (a, b))
    assert [r["response"] for r in ra] == [r["response"] for r in rb]
    again = runner.invoke(app, ["steer", "orthogonalize", "--model", str(tiny_folder),
                                "--directions", str(swept / "directions.h5"), "--out", str(out)])
    _one_line(again, "not overwriting")


def test_steer_eval_writes_rates_and_figure(swept, tiny_folder):
    res = runner.invoke(app, ["steer", "eval", "--model", str(tiny_folder), "--directions",
                              str(swept / "directions.h5"), "--coef", "0,4", "--n", "3",
                              "--max-new-tokens", "4"])
    assert res.exit_code == 0, res.output
    from pathlib import Path

    run = Path(res.stdout.strip().splitlines()[-1])
    out = json.loads((run / "steer_eval.json").read_text())["results"]
    assert [r["condition"] for r in out] == ["harmful/none", "harmful/ablate",
                                             "harmless/add=0", "harmless/add=4"]
    assert all(r["n"] == 3 and r["ci_low"] - 1e-12 <= r["refusal_rate"] <= r["ci_high"] for r in out), out
    assert (run / "steer_eval.png").stat().st_size and (run / "steer_eval.pdf").stat().st_size
    assert json.loads((run / "manifest.json").read_text())["harmful_content"] is True
    _one_line(runner.invoke(app, ["steer", "eval", "--model", str(tiny_folder), "--directions",
                                  str(swept / "directions.h5"), "--coef", "x"]), "--coef")
