"""`refusalscope defend tar|steer` through the CLI on tiny models: the defended model feeds
`attack lora` and `generate`; the steering defense picks alpha on the direction split; bad input
is one line with exit code 2 and writes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from refusalscope.cli.app import app
from defense_fixtures import pair_file, write_built_all

runner = CliRunner()


def _one_line_error(result, needle):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], result.stderr


def _nothing_written(tmp_path, before=()):
    assert sorted(p.name for p in (tmp_path / "artifacts").glob("runs/*")) == sorted(before)


def _last(res) -> Path:
    assert res.exit_code == 0, res.output + res.stderr
    return Path(res.stdout.strip().splitlines()[-1])


TAR = ["--n-data", "3", "--outer-steps", "1", "--inner-steps", "1", "--batch-size", "2",
       "--max-len", "48", "--n-retain", "2", "--retain-new-tokens", "3"]


def test_defend_tar_then_attack_and_generate_on_the_defended_model(tiny_folder, tmp_path):
    write_built_all()
    data = pair_file(tmp_path)
    run = _last(runner.invoke(app, ["defend", "tar", "--model", str(tiny_folder), "--data", data,
                                    *TAR]))
    man = json.loads((run / "manifest.json").read_text())
    assert man["command"] == "defend-tar" and man["status"] == "success"
    assert man["config"]["inner_steps"] == 1 and "first-order" in man["extra"]["method"]
    res = runner.invoke(app, ["attack", "lora", "--model", str(run / "model"), "--data", data,
                              "--n-data", "2", "--steps", "1", "--batch-size", "2",
                              "--max-len", "48"])
    assert res.exit_code == 0, res.output + res.stderr
    attack = res.stdout.split("\t")[0]
    gen = _last(runner.invoke(app, ["generate", "--model", str(run), "--adapter", attack,
                                    "--split", "eval", "--n", "2", "--max-new-tokens", "3"]))
    gman = json.loads((gen / "manifest.json").read_text())
    assert gman["status"] == "success"
    assert gman["extra"]["model"]["source"] == f"folder:{(run / 'model').resolve()}"


def test_defend_tar_sets_alphas_and_the_adversary_distribution(tiny_folder, tmp_path):
    """--lora-alpha, --inner-lora-alpha and the held-out adversary options reach TarConfig;
    the run's result.json has the one defense schema."""
    from refusalscope.defenses.base import RESULT_KEYS
    from refusalscope.defenses.tar import TarConfig, adversary

    write_built_all()
    run = _last(runner.invoke(app, [
        "defend", "tar", "--model", str(tiny_folder), "--data", pair_file(tmp_path), *TAR,
        "--outer-steps", "2", "--lora-alpha", "4", "--inner-lora-alpha", "8",
        "--adv-lrs", "1e-3,1e-2", "--adv-ranks", "2,4", "--adv-steps", "1,2",
        "--adv-modules", "attn,mlp"]))
    cfg = json.loads((run / "manifest.json").read_text())["config"]
    assert (cfg["alpha"], cfg["inner_alpha"]) == (4.0, 8.0)
    assert (cfg["adv_lrs"], cfg["adv_ranks"], cfg["adv_steps"], cfg["adv_modules"]) == \
        ([1e-3, 1e-2], [2, 4], [1, 2], ["attn", "mlp"])
    result = json.loads((run / "result.json").read_text())
    assert set(RESULT_KEYS) <= set(result) and result["defense"] == "tar"
    assert result["kind"] == "weights" and result["artefact"]["model"] == str(run / "model")
    drawn = [adversary(TarConfig.from_dict(cfg), s).steps for s in range(2)]
    assert result["compute"]["inner_steps"] == sum(drawn)  # each outer step's drawn attack


@pytest.mark.parametrize("extra, needle", [
    (["--inner-steps", "0"], "--inner-steps must be at least 1 (got 0)"),
    (["--outer-steps", "0"], "--outer-steps must be at least 1 (got 0)"),
    (["--n-data", "99"], "--n-data 99 is more than the 5 pairs"),
    (["--adv-modules", "attn,heads"], "unknown --adv-modules ['heads']"),
    (["--adv-steps", "1,x"], "--adv-steps: 'x' is not a int"),
    (["--lora-alpha", "0"], "--lora-alpha must be > 0 (got 0.0)"),
    (["--inner-lora-alpha", "-1"], "--inner-lora-alpha must be > 0 (got -1.0)"),
])
def test_defend_tar_bad_input(tiny_folder, tmp_path, extra, needle):
    write_built_all()
    args = ["defend", "tar", "--model", str(tiny_folder), "--data", pair_file(tmp_path), *TAR]
    _one_line_error(runner.invoke(app, [*args, *extra]), needle)
    _nothing_written(tmp_path)


@pytest.fixture
def attacked(tiny_folder, tmp_path):
    """Built data, a direction file of the tiny model, and a 1-step LoRA attack on it."""
    texts = write_built_all()
    sweep = _last(runner.invoke(app, ["probe", "sweep", "--model", str(tiny_folder), "--n", "2",
                                      "--n-val", "1", "--positions", "last",
                                      "--batch-size", "4"]))
    res = runner.invoke(app, ["attack", "lora", "--model", str(tiny_folder), "--data",
                              pair_file(tmp_path), "--n-data", "2", "--steps", "1"])
    assert res.exit_code == 0, res.output
    return texts, sweep / "directions.h5", res.stdout.split("\t")[0]


def test_defend_steer_searches_on_direction_split_then_evaluates(attacked, tiny_folder,
                                                                 monkeypatch):
    import importlib

    gen_mod = importlib.import_module("refusalscope.generation")  # rs.generate is the API function
    from refusalscope.generation import generate_rows as real_rows
    from refusalscope.interp import steer_eval

    texts, dirs, attack = attacked
    searched: list[str] = []

    def spy(handle, prompts, cfg, **kw):
        searched.extend(p.prompt for p in prompts)
        return real_rows(handle, prompts, cfg, **kw)

    monkeypatch.setattr(gen_mod, "generate_rows", spy)  # eval_condition imports it per call
    conditions: list[tuple[str, list[str]]] = []
    real_condition = steer_eval.eval_condition

    def condition_spy(handle, name, prompts, *a, **kw):
        conditions.append((name, [p.prompt for p in prompts]))
        return real_condition(handle, name, prompts, *a, **kw)

    monkeypatch.setattr(steer_eval, "eval_condition", condition_spy)  # imported per call too
    run = _last(runner.invoke(app, ["defend", "steer", "--model", str(tiny_folder), "--adapter",
                                    attack, "--directions", str(dirs), "--coef", "0,2,50",
                                    "--n", "3", "--max-new-tokens", "3",
                                    "--eval-n", "2", "--eval-max-new-tokens", "3"]))
    # the search goes through steer eval's condition runner: one condition per alpha and side,
    # on direction-split prompts
    assert [name for name, _ in conditions[:6]] == [
        f"{side}/add={a}" for a in (0, 2, 50) for side in ("harmful", "harmless")]
    assert all(ps and set(ps) <= set(texts["direction"]) for _, ps in conditions[:6])
    assert len(conditions) == 6  # the eval prompts go through `generate` runs, not conditions
    search = json.loads((run / "search.json").read_text())
    assert [r["alpha"] for r in search["table"]] == [0, 2, 50]
    chosen = search["chosen"]
    # --skip defaults to the sweep's --n + --n-val (2 + 1): the search is held out from it
    assert chosen["prompt_ids"]["harmful"] == [f"harmful-direction-{i}" for i in (3, 4, 5)]
    # every search prompt is a direction-split prompt; eval prompts come only afterwards
    n_search = 3 * 2 * 3  # alphas x sides x prompts
    assert all(p in texts["direction"] for p in searched[:n_search])
    assert all(p in texts["eval"] for p in searched[n_search:]) and searched[n_search:]
    ev = json.loads((run / "eval.json").read_text())
    assert "0" in ev and f"{chosen['alpha']:g}" in ev
    for sides in ev.values():
        for side, v in sides.items():
            assert v["n"] == 2 and v["ci"][0] <= v["rate"] <= v["ci"][1]
            g = json.loads((Path(v["run"]) / "manifest.json").read_text())
            assert g["config"]["split"] == "eval" and g["config"]["adapter"] == attack
            assert g["config"]["harmless"] == (side == "harmless")
    for f in ("search.csv", "steer.txt", "defense.png", "defense.pdf"):
        assert (run / f).stat().st_size > 0
    assert json.loads((run / "manifest.json").read_text())["harmful_content"] is True


def test_defend_steer_bad_input(attacked, tiny_folder, tmp_path):
    _, dirs, attack = attacked
    before = [p.name for p in (tmp_path / "artifacts").glob("runs/*")]
    base = ["defend", "steer", "--model", str(tiny_folder), "--adapter", attack]
    _one_line_error(runner.invoke(app, base), "needs a directions file")
    _one_line_error(runner.invoke(app, [*base, "--directions", str(tmp_path / "nope.h5")]),
                    "no directions file")
    from refusalscope.models.tiny import tiny_model

    other = tmp_path / "other"
    m, t = tiny_model("llama", seed=11)
    m.save_pretrained(other)
    t.save_pretrained(other)
    _one_line_error(runner.invoke(app, ["defend", "steer", "--model", str(other), "--directions",
                                        str(dirs)]), "another model")
    _one_line_error(runner.invoke(app, [*base, "--directions", str(dirs), "--rule", "best"]),
                    "--rule 'best'")
    _nothing_written(tmp_path, before)
