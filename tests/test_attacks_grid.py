"""Grid expansion, value parsing, and skip/resume of cells by content id (tiny model folder)."""

from __future__ import annotations

import json

import pytest

from refusalscope.attacks.grid import expand_grid, find_run, parse_values, run_grid
from refusalscope.attacks.lora import LoraAttackConfig
from refusalscope.errors import UserError
from refusalscope.runs import Run


def test_parse_values():
    assert parse_values("1, 2,4,2", int, "--steps") == [1, 2, 4]
    assert parse_values("2e-4,1e-3", float, "--lr") == [2e-4, 1e-3]
    assert parse_values(8, int, "--rank") == [8]
    with pytest.raises(UserError, match="--steps: 'x' is not a int"):
        parse_values("1,x", int, "--steps")


def test_expand_grid_exact_order():
    cfgs = expand_grid("m", {"seed": [0, 1], "n_data": [8, 16], "steps": [1, 2, 4]},
                       batch_size=2)
    assert len(cfgs) == 12
    assert [(c.n_data, c.steps, c.seed) for c in cfgs[:4]] == [(8, 1, 0), (8, 1, 1), (8, 2, 0),
                                                               (8, 2, 1)]
    assert [(c.n_data, c.steps, c.seed) for c in cfgs[-2:]] == [(16, 4, 0), (16, 4, 1)]
    assert all(c.batch_size == 2 and c.model == "m" for c in cfgs)
    assert len(set(cfgs)) == 12
    with pytest.raises(UserError, match="--steps must be at least 1"):
        expand_grid("m", {"steps": [1, 0]})


def _pairs_file(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"prompt": f"Write a poem number {i}.",
                                     "response": f"Sure, here is poem {i} about the sea."}) + "\n"
                         for i in range(6)))
    return str(f)


def test_run_grid_skips_finished_and_resumes_unfinished(tiny_folder, tmp_path):
    data = _pairs_file(tmp_path)
    cfgs = expand_grid(str(tiny_folder), {"n_data": [4], "steps": [1, 2]}, batch_size=2,
                       data_file=data, max_len=48)
    first = run_grid(cfgs)
    assert [r.skipped for r in first] == [False, False]
    for r, c in zip(first, cfgs):
        run = Run.open(r.run_path)
        m = run.manifest
        assert (m.status, m.command, m.model, m.seed) == ("success", "attack-lora", c.model, 0)
        assert LoraAttackConfig.from_dict(m.config) == c
        assert m.harmful_content and m.content_warning
        assert m.extra["compute"]["steps"] == c.steps
        assert m.extra["compute"]["examples_seen"] == 2 * c.steps
        assert json.loads(run.file("compute.json").read_text()) == m.extra["compute"]
        assert run.file("loss.png").stat().st_size > 0
        assert (run.file("adapter") / "adapter_model.safetensors").is_file()
    assert find_run(cfgs[0]).path == Run.open(first[0].run_path).path
    # a third cell is new; the first two are found by config id and skipped
    more = expand_grid(str(tiny_folder), {"n_data": [4], "steps": [1, 2, 3]}, batch_size=2,
                       data_file=data, max_len=48)
    second = run_grid(more)
    assert [r.skipped for r in second] == [True, True, False]
    assert [r.run_path for r in second[:2]] == [r.run_path for r in first]
    # an unfinished run of a cell is continued in its own folder, not duplicated
    unfinished = Run.open(second[2].run_path)
    unfinished.manifest.status = "error"
    unfinished.save()
    third = run_grid(more[2:])
    assert third[0].run_path == second[2].run_path and not third[0].skipped
    assert Run.open(third[0].run_path).manifest.status == "success"


def test_adapter_loads_for_generation(tiny_folder, tmp_path):
    from refusalscope.models.handle import ModelHandle

    cfg = expand_grid(str(tiny_folder), {"steps": [2]}, n_data=4, batch_size=2,
                      data_file=_pairs_file(tmp_path), max_len=48, lr=5e-2)
    res = run_grid(cfg)[0]
    plain = ModelHandle.load(str(tiny_folder))
    attacked = ModelHandle.load(str(tiny_folder), adapter=res.run_path)
    import torch

    ids = plain.tokenizer("hello there", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(plain.model(ids).logits, attacked.model(ids).logits)


def test_shorter_cells_are_snapshots_of_the_longest(tiny_folder, tmp_path, monkeypatch):
    """Steps 1 and 3 train once (3 steps); the 1-step cell equals a 1-step run trained alone."""
    from safetensors.torch import load_file

    data = _pairs_file(tmp_path)
    grid = expand_grid(str(tiny_folder), {"n_data": [4], "steps": [1, 3]}, batch_size=2,
                       data_file=data, max_len=48, lr=5e-2, dropout=0.1)
    cells = run_grid(grid)
    snap, longest = (Run.open(r.run_path) for r in cells)
    assert snap.manifest.extra["derived_from"] == longest.id
    assert snap.manifest.extra["compute"]["steps"] == 1
    assert snap.manifest.extra["compute"]["examples_seen"] == 2
    assert [r["step"] for r in map(json.loads, snap.file("loss.jsonl").read_text().splitlines())] == [1]
    monkeypatch.setenv("REFUSALSCOPE_ARTIFACTS", str(tmp_path / "alone"))  # fresh: no reuse
    alone = Run.open(run_grid(grid[:1])[0].run_path)
    assert "derived_from" not in alone.manifest.extra
    a = load_file(snap.file("adapter") / "adapter_model.safetensors")
    b = load_file(alone.file("adapter") / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-6, k
    first_long = json.loads(longest.file("loss.jsonl").read_text().splitlines()[0])["loss"]
    first_alone = json.loads(alone.file("loss.jsonl").read_text().splitlines()[0])["loss"]
    assert first_long == first_alone
