"""The CLI vocabulary of docs/cli.md, checked on every command of the real command tree.

Walks `typer.main.get_command(app)` (the click tree `refusalscope` runs) and asserts what a
newcomer relies on: help on every option, word metavars, one spelling per meaning, an example
closing every command's help, `--out` wherever a run is written, old spellings still working
(with a note), and option defaults read from the config classes.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
import typer
from typer.core import TyperArgument, TyperOption
from typer.testing import CliRunner

from refusalscope.cli._common import RENAMED
from refusalscope.cli.app import app

# `attack ...` commands are checked by `test_attack_commands_have_no_gaps` (the same rules).
ATTACK_ALLOWED: set[str] = set()

# Spellings that are not the vocabulary (each has a replacement in docs/cli.md).
FORBIDDEN = ("--n-eval", "--max-length", "--pos", "--model-dtype", "--alpha")
PY_TYPE = re.compile(r"<|\b(str|int|float|bool|Path|list\[|dict\[)\b")

# Commands that write a new run or output folder: each takes --out.
WRITES = {
    "generate", "probe", "probe sweep", "probe compare", "steer eval", "steer orthogonalize",
    "defend steer", "defend tar", "fit", "study report", "view", "label", "score validate",
    "score runs",
}
# Writers whose output has a fixed home (the cache, or inside an input run / the study):
# documented in docs/cli.md, no --out.
NO_OUT = {
    "models pull": "the model cache", "data pull": "the data cache",
    "data build": "the data cache", "data import": "the data cache",
    "score train-classifier": "the classifier cache (--name)",
    "score drift": "drift.json goes into OTHER_RUN", "study run": "the study folder",
    "data pairs": "the pairs cache, by content id (--name)",
}


def walk(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(command path, click command) for every command, groups with own options included."""
    out = []
    subs = getattr(cmd, "commands", None)
    if path and (not subs or any(isinstance(p, TyperOption) for p in cmd.params)):
        out.append((" ".join(path), cmd))
    for name, sub in (subs or {}).items():
        out.extend(walk(sub, (*path, name)))
    return out


COMMANDS = walk(typer.main.get_command(app))
OURS = [(p, c) for p, c in COMMANDS if not p.startswith("attack")]


def visible_options(cmd: Any) -> list[Any]:
    return [p for p in cmd.params if isinstance(p, TyperOption) and not p.hidden]


def spellings(cmd: Any) -> set[str]:
    return {s for p in visible_options(cmd) for s in (*p.opts, *p.secondary_opts)}


def test_walk_finds_every_command() -> None:
    names = {p for p, _ in COMMANDS}
    assert {"generate", "probe", "probe sweep", "defend steer", "defend tar", "fit", "study plan",
            "data pairs", "score runs", "score drift", "score validate", "steer eval", "view",
            "label", "serve", "models list"} <= names
    assert any(p.startswith("attack ") for p in names)


@pytest.mark.parametrize("path,cmd", OURS, ids=[p for p, _ in OURS])
def test_every_option_has_help_and_word_metavar(path: str, cmd: Any) -> None:
    ctx = typer.main.get_command(app).make_context  # noqa: F841 (a real context below)
    from typer._click.core import Context

    c = Context(cmd)
    for p in cmd.params:
        record = p.get_help_record(c)
        if record is None:
            continue
        name, text = record
        if isinstance(p, TyperOption):
            assert (p.help or "").strip(), f"{path} {p.opts}: no help text"
        assert not PY_TYPE.search(name), f"{path}: metavar shows a Python type: {name!r}"
        if isinstance(p, TyperArgument):
            assert name.split()[0].upper() == name.split()[0], f"{path}: {name!r}"


@pytest.mark.parametrize("path,cmd", OURS, ids=[p for p, _ in OURS])
def test_no_forbidden_spelling(path: str, cmd: Any) -> None:
    seen = spellings(cmd)
    assert not seen & set(FORBIDDEN), f"{path}: {sorted(seen & set(FORBIDDEN))}"
    assert not any(s.startswith("--no-no-") for s in seen), f"{path}: {sorted(seen)}"


@pytest.mark.parametrize("path,cmd", OURS, ids=[p for p, _ in OURS])
def test_help_ends_with_an_example(path: str, cmd: Any) -> None:
    lines = [ln.strip() for ln in (cmd.help or "").strip().splitlines() if ln.strip()]
    assert lines, f"{path}: no help"
    assert lines[-1].startswith(f"refusalscope {path.split()[0]}"), f"{path}: {lines[-1]!r}"
    assert lines[-2] == "Example:", path


def test_writers_take_out_and_name_the_artifacts_folder() -> None:
    tree = dict(COMMANDS)
    for path in WRITES:
        assert "--out" in spellings(tree[path]), path
    for path, cmd in OURS:
        writes_run = "--out" in spellings(cmd)
        assert writes_run == (path in WRITES), f"{path}: --out {writes_run}, WRITES {path in WRITES}"
        if writes_run and path not in ("steer orthogonalize", "view", "label", "study report"):
            assert "$REFUSALSCOPE_ARTIFACTS" in (cmd.help or ""), path


def test_attack_commands_have_no_gaps() -> None:
    """Attack commands follow the vocabulary too: help on every option, a closing example,
    `--out`, no forbidden spelling."""
    gaps = []
    for path, cmd in COMMANDS:
        if not path.startswith("attack"):
            continue
        if any(not (p.help or "").strip() for p in visible_options(cmd)):
            gaps.append((path, "no_help"))
        if not (cmd.help or "").strip().splitlines()[-1].strip().startswith("refusalscope "):
            gaps.append((path, "no_example"))
        if "--out" not in spellings(cmd):
            gaps.append((path, "no_out"))
        if spellings(cmd) & set(FORBIDDEN):
            gaps.append((path, "forbidden"))
    assert {kind for _, kind in gaps} <= ATTACK_ALLOWED, gaps


# --- Old spellings keep working for one release -------------------------------------------


def test_renames_point_at_visible_options() -> None:
    tree = dict(COMMANDS)
    for path, renames in RENAMED.items():
        if path.startswith("attack"):
            continue
        for old, new in renames.items():
            assert new in spellings(tree[path]), f"{path}: {old} -> {new} (not an option)"
            assert old not in spellings(tree[path]), f"{path}: {old} still visible"


def test_old_spelling_works_with_a_note(tmp_path: Any) -> None:
    """`steer eval --alpha` reaches the new --coef (its own validation speaks of --coef)."""
    r = CliRunner().invoke(app, ["steer", "eval", "-m", "x", "-d", str(tmp_path / "d.h5"),
                                 "--alpha", "zero"])
    assert r.exit_code == 2
    assert r.stderr.count("`refusalscope steer eval --alpha` is deprecated") == 1
    assert "--coef 'zero'" in r.output


def test_old_boolean_spelling_works(tmp_path: Any) -> None:
    from refusalscope.cli._common import _rewrite

    args = _rewrite("refusalscope score train-classifier",
                    RENAMED["score train-classifier"], ["--no-no-pyrit", "--max-length=64"], set())
    assert args == ["--pyrit", "--max-len=64"]


# --- One copy of every default -------------------------------------------------------------


def _config_defaults() -> list[tuple[str, Any, dict[str, str]]]:
    """(command, config class, {option parameter: config field}) for every command whose
    options mirror a config."""
    from refusalscope.defenses.steer import SteerDefenseConfig
    from refusalscope.defenses.tar import TarConfig
    from refusalscope.generation import GenerateConfig
    from refusalscope.interp.activations import ProbeConfig
    from refusalscope.interp.steer_eval import SteerEvalConfig
    from refusalscope.interp.sweep import SweepConfig
    from refusalscope.data.pairgen import PairsConfig
    from refusalscope.scoring.classifier import TrainConfig
    from refusalscope.scoring.judge import JudgeConfig
    from refusalscope.scoring.validate import ValidateConfig
    from refusalscope.study.fit import FitConfig

    same = lambda *names: {n: n for n in names}  # noqa: E731
    return [
        ("generate", GenerateConfig, same("split", "n", "max_new_tokens", "seed",
                                          "temperature", "top_p")),
        ("probe", ProbeConfig, {**same("sites", "layers", "positions", "backend", "split",
                                       "compression"), "store_dtype": "dtype"}),
        ("probe sweep", SweepConfig, same("n", "n_val", "positions", "site", "kl_threshold",
                                          "max_layer_frac", "split")),
        ("steer eval", SteerEvalConfig, {**same("n", "split", "max_new_tokens", "scorer",
                                                "harmful"), "coef": "alphas"}),
        ("defend steer", SteerDefenseConfig, {**same("n", "max_new_tokens", "rule", "target",
                                                     "eval_n", "eval_max_new_tokens", "scorer",
                                                     "seed"), "coef": "alphas"}),
        ("score train-classifier", TrainConfig, same("backbone", "name", "epochs", "batch_size",
                                                     "lr", "max_length", "max_train_rows",
                                                     "seed", "head", "view", "class_weight")),
        ("data pairs", PairsConfig, same("generator", "temperature", "top_p", "max_new_tokens",
                                         "seed", "system_prompt", "scorer")),
        ("fit", FitConfig, same("metric", "x", "n_boot", "seed", "interaction", "c0", "rd_over",
                                "n_kind", "include_controls", "c_axis")),
        ("score validate", ValidateConfig, same("sample", "seed")),
        ("score validate", JudgeConfig, {**same("rubric", "max_input_tokens", "api_key_env",
                                                "retries"),
                                         "timeout": "timeout_s",
                                         "judge_max_new_tokens": "max_new_tokens"}),
        ("defend tar", TarConfig, {**same("outer_steps", "inner_steps", "inner_lr", "outer_lr",
                                          "retain_weight", "rank", "inner_rank", "n_data",
                                          "n_retain", "retain_new_tokens", "batch_size",
                                          "max_len", "target_kind", "seed", "save_every",
                                          "adv_lrs", "adv_ranks", "adv_steps", "adv_modules"),
                                   "lora_alpha": "alpha", "inner_lora_alpha": "inner_alpha"}),
    ]


def _as_config_value(value: Any, field_default: Any) -> Any:
    if isinstance(field_default, tuple) and isinstance(value, str):
        parts = [x for x in value.split(",") if x]
        return tuple(type(field_default[0])(x) for x in parts)
    return value


@pytest.mark.parametrize("path,config,mapping", _config_defaults(),
                         ids=[f"{c}:{k.__name__}" for c, k, _ in _config_defaults()])
def test_cli_defaults_are_the_config_defaults(path: str, config: Any,
                                              mapping: dict[str, str]) -> None:
    cmd = dict(COMMANDS)[path]
    params = {p.name: p for p in cmd.params}
    fields = {f.name: f for f in dataclasses.fields(config)}
    for param, field in mapping.items():
        want = fields[field].default
        got = _as_config_value(params[param].default, want)
        if isinstance(want, tuple) and isinstance(got, str):  # "resid_pre" vs ("resid_pre",)
            got = tuple(got.split(","))
        assert got == want, f"{path} {param}: CLI {got!r} vs {config.__name__}.{field} {want!r}"
    if path == "probe":
        from refusalscope.cli.probe import DEFAULT_N

        assert DEFAULT_N == fields["n"].default


def test_score_classifier_default_is_the_scoring_default() -> None:
    """`score --classifier` and `train-classifier --name` name the package's default classifier
    (kept as literals so `refusalscope --help` does not import the scoring stack)."""
    from refusalscope.scoring.classifier import DEFAULT_NAME

    tree = dict(COMMANDS)
    assert {p.name: p.default for p in tree["score runs"].params}["classifier"] == DEFAULT_NAME
    assert {p.name: p.default for p in tree["score train-classifier"].params}["name"] \
        == DEFAULT_NAME


def _groups(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    subs = getattr(cmd, "commands", None) or {}
    out = [(" ".join(path), cmd)] if path and subs else []
    for name, sub in subs.items():
        out.extend(_groups(sub, (*path, name)))
    return out


GROUPS = _groups(typer.main.get_command(app))


@pytest.mark.parametrize("path,cmd", GROUPS, ids=[p for p, _ in GROUPS])
def test_group_help_ends_with_an_example(path: str, cmd: Any) -> None:
    """`refusalscope score --help` etc.: the group's own help closes with an example too."""
    lines = [ln.strip() for ln in (cmd.help or "").strip().splitlines() if ln.strip()]
    assert len(lines) >= 2 and lines[-2] == "Example:", f"{path}: {lines[-2:]!r}"
    assert lines[-1].startswith(f"refusalscope {path}"), f"{path}: {lines[-1]!r}"
