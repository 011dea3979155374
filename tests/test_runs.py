"""Run folders and manifests: atomic, round-tripping, never overwriting."""

from __future__ import annotations

import json

import pytest

from refusalscope.errors import UserError
from refusalscope.fileio import append_jsonl, atomic_write_json, read_jsonl
from refusalscope.runs import CONTENT_WARNING, Manifest, Run, config_id, model_slug


def test_manifest_round_trip(tmp_path):
    run = Run.create("generate", {"model": "m", "n": 3, "split": "eval"}, model="m", seed=4,
                     input_runs=["a"], harmful_content=True, root=tmp_path)
    again = Run.open(run.path)
    assert again.manifest == run.manifest
    assert Manifest.from_dict(json.loads(json.dumps(run.manifest.to_dict()))) == run.manifest
    d = again.manifest
    assert (d.status, d.seed, d.input_runs, d.schema_version) == ("started", 4, ["a"], 1)
    assert d.content_warning == CONTENT_WARNING and d.packages["torch"]
    assert run.id.endswith(f"_generate_m_{config_id({'model': 'm', 'n': 3, 'split': 'eval'})}")


def test_finish_and_no_temp_files_left(tmp_path):
    run = Run.create("score", {"x": 1}, root=tmp_path)
    run.finish("success")
    assert Run.open(run.path).manifest.status == "success"
    assert Run.open(run.path).manifest.finished
    assert sorted(p.name for p in run.path.iterdir()) == ["manifest.json"]


def test_new_file_never_overwrites(tmp_path):
    run = Run.create("score", {}, root=tmp_path)
    first = run.new_file("scores", ".jsonl")
    first.write_text("x")
    second = run.new_file("scores", ".jsonl")
    assert (first.name, second.name) == ("scores.jsonl", "scores.2.jsonl")


def test_open_errors(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        Run.open(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="corrupt manifest"):
        Run.open(bad)


def test_config_id_is_order_free():
    assert config_id({"a": 1, "b": 2}) == config_id({"b": 2, "a": 1}) != config_id({"a": 2, "b": 2})


def test_jsonl_torn_tail_is_dropped(tmp_path):
    path = tmp_path / "g.jsonl"
    append_jsonl(path, {"id": 1})
    append_jsonl(path, {"id": 2})
    with open(path, "a") as f:
        f.write('{"id": 3, "resp')
    assert read_jsonl(path) == [{"id": 1}, {"id": 2}]
    path.write_text('{"id": 1}\n{broken\n{"id": 3}\n')
    with pytest.raises(UserError, match="line 2"):
        read_jsonl(path)


def test_atomic_write_json_sorted(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'


def test_run_names_of_models_saved_inside_runs(tmp_path):
    defended = Run.create("defend-tar", {"a": 1}, model="qwen2.5-coder-0.5b", root=tmp_path)
    (defended.path / "model").mkdir()
    attack = Run.create("attack-lora", {"b": 2}, model=str(defended.path / "model"), root=tmp_path)
    assert attack.id.split("_")[1:3] == ["attack-lora", "qwen2.5-coder-0.5b-defend-tar"]
    assert model_slug("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen-Qwen2.5-0.5B-Instruct"
    assert model_slug(str(tmp_path / "weights" / "tiny.gguf")) == "tiny"
    assert model_slug(str(tmp_path / "my-folder")) == "my-folder"


def test_guard_records_the_error_and_reraises(tmp_path):
    run = Run.create("generate", {"x": 1}, root=tmp_path)
    with pytest.raises(ValueError, match="boom"), run.guard():
        raise ValueError("boom " + "x" * 600)
    m = Run.open(run.path).manifest
    assert m.status == "error" and m.finished
    assert m.error == ("ValueError: boom " + "x" * 600)[:500]


def test_guard_records_ctrl_c_as_an_error(tmp_path):
    run = Run.create("generate", {"x": 1}, root=tmp_path)
    with pytest.raises(KeyboardInterrupt), run.guard():
        raise KeyboardInterrupt
    m = Run.open(run.path).manifest
    assert (m.status, m.error) == ("error", "KeyboardInterrupt: ")


def test_guard_leaves_a_clean_run_as_it_is(tmp_path):
    run = Run.create("generate", {"x": 1}, root=tmp_path)
    with run.guard() as same:
        assert same is run
    m = Run.open(run.path).manifest
    assert (m.status, m.error, m.finished) == ("started", None, None)
