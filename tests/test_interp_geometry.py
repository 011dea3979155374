import csv

import numpy as np
import pytest

from refusalscope.errors import UserError
from refusalscope.interp.geometry import (compare, diff_in_means, effective_rank, file_rows,
                                          probe_accuracy, shift_rows)
from refusalscope.interp.geometry_report import write_report
from refusalscope.interp.h5io import ProbeMeta, ProbeWriter

D, N, LAYERS = 32, 40, 4


def _unit(seed):
    v = np.random.default_rng(seed).normal(size=D)
    return v / np.linalg.norm(v)


def _planted(direction, alpha, seed=0, n=N):
    """`n` harmful + `n` harmless rows of noise; harmful rows shifted by alpha * direction."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.5, size=(2 * n, D)) + 3.0  # an offset shared by both classes
    y = np.array([1] * n + [0] * n)
    x[y == 1] += alpha * direction
    return x, y


def _write(path, per_layer, model="m", d=D):
    """A real probe file whose layer L holds `per_layer[L]` = (x (n, d), y)."""
    x0, y = per_layer[0]
    meta = ProbeMeta(model=model, fingerprint="f" + path.stem, n_layers=len(per_layer), d_model=d,
                     sites=("resid_pre",), layers=tuple(range(len(per_layer))),
                     positions="last", n_post=1, n_positions=1, dtype="float32",
                     backend="native")
    with ProbeWriter(path, meta, [f"p{i}" for i in range(len(y))], y, ["t"] * len(y),
                     batch_size=16) as w:
        w.write(0, {("resid_pre", layer): x[:, None, :] for layer, (x, _) in enumerate(per_layer)})
    return path


def test_diff_in_means_recovers_planted_direction():
    v = _unit(1)
    x, y = _planted(v, 4.0)
    d = diff_in_means(x, y)
    assert d.dtype == np.float64
    assert d @ v / np.linalg.norm(d) > 0.95
    assert abs(np.linalg.norm(d) - 4.0) < 0.4


def test_effective_rank_exact_cases():
    assert effective_rank(np.eye(5)) == pytest.approx(5.0)
    assert effective_rank(np.outer(np.arange(1, 7), np.arange(1, 4))) == pytest.approx(1.0)
    assert effective_rank(np.diag([1.0, 1.0, 0.0])) == pytest.approx(2.0)
    assert effective_rank(np.zeros((3, 3))) == 0.0


def test_probe_accuracy_separable_vs_noise():
    v = _unit(2)
    assert probe_accuracy(*_planted(v, 8.0)) == 1.0
    assert abs(probe_accuracy(*_planted(v, 0.0, seed=5)) - 0.5) < 0.2
    with pytest.raises(UserError, match="at least 2 harmful"):
        probe_accuracy(np.zeros((3, D)), np.array([1, 0, 0]))


def test_file_rows_per_layer(tmp_path):
    v = _unit(3)
    layers = [_planted(v, a, seed=i) for i, a in enumerate([0.0, 1.0, 4.0, 8.0])]
    rows = file_rows(_write(tmp_path / "a.h5", layers), "resid_pre")
    assert [r["rel_depth"] for r in rows] == [0.0, 0.25, 0.5, 0.75]
    norms = [r["norm"] for r in rows]
    assert norms == sorted(norms) and rows[-1]["probe_acc"] == 1.0
    # a strong planted direction concentrates the differences: lower effective rank than noise
    assert rows[-1]["erank"] < rows[0]["erank"] - 5
    with pytest.raises(UserError, match="no site 'resid_post'"):
        file_rows(tmp_path / "a.h5", "resid_post")


def test_shift_detects_rotation_and_shrinkage(tmp_path):
    v = _unit(4)
    u = _unit(5) - (_unit(5) @ v) * v
    u /= np.linalg.norm(u)
    base = _write(tmp_path / "base.h5", [_planted(v, 6.0, seed=s) for s in range(LAYERS)])
    rotated = _write(tmp_path / "rot.h5", [_planted(u, 6.0, seed=10 + s) for s in range(LAYERS)])
    shrunk = _write(tmp_path / "shr.h5", [_planted(v, 1.2, seed=20 + s) for s in range(LAYERS)])
    rot = shift_rows(base, rotated, "resid_pre")
    assert all(r["verdict"] == "rotated" and abs(r["cosine"]) < 0.3 for r in rot)
    assert all(abs(r["separation_along_base"]) < 0.3 for r in rot)
    assert all(r["probe_acc_other"] == 1.0 and r["base_probe_on_other"] < 0.75 for r in rot)
    shr = shift_rows(base, shrunk, "resid_pre")
    assert all(r["verdict"] == "shrunk" and r["cosine"] > 0.8 for r in shr)
    assert all(abs(r["norm_ratio"] - 0.2) < 0.1 for r in shr)
    assert all(r["proj_harmful_other"] < r["proj_harmful_base"] for r in shr)
    same = shift_rows(base, base, "resid_pre")
    assert all(r["verdict"] == "kept" and r["cosine"] == pytest.approx(1.0) for r in same)
    other_model = _write(tmp_path / "big.h5", [_planted(v, 6.0)] * 2, model="big")
    with pytest.raises(UserError, match="not the baseline's m"):
        shift_rows(base, other_model, "resid_pre")


def test_compare_and_report(tmp_path):
    v = _unit(6)
    small = _write(tmp_path / "small.h5", [_planted(v, 6.0, seed=s) for s in range(LAYERS)])
    attacked = _write(tmp_path / "att.h5", [_planted(v, 1.0, seed=s) for s in range(LAYERS)])
    big = _write(tmp_path / "big.h5", [_planted(_unit(7), 3.0, seed=s) for s in range(2)],
                 model="big")
    files, shifts = compare([small, big, attacked], "resid_pre")
    assert len(files) == LAYERS + 2 + LAYERS
    assert {r["other"] for r in shifts} == {"att.h5"} and len(shifts) == LAYERS
    out = tmp_path / "report"
    out.mkdir()
    written = write_report(out, files, shifts, site="resid_pre", pos=-1)
    assert {p.name for p in written} == {"geometry.csv", "shift.csv", "geometry.md",
                                          "geometry.png"}
    with open(out / "geometry.csv") as f:
        assert len(list(csv.DictReader(f))) == len(files)
    md = (out / "geometry.md").read_text()
    assert "| big.h5 | big | 2 |" in md and "shrunk" in md
    assert (out / "geometry.png").read_bytes()[:4] == b"\x89PNG"


def test_figure_labels_are_short():
    from refusalscope.interp.geometry_report import _label, _short

    run = "/x/runs/20261128T154556299848Z_attack-lora_qwen2.5-coder-0.5b_8338b897"
    assert _label({"model": "m", "adapter": run + "/adapter"}) == "m + attack-lora 8338b897"
    assert _short("20261128T213411396813Z_probe_qwen2.5-coder-0.5b_a2eff6f7") == "probe a2eff6f7"
    assert _short("/some/where/a-very-long-file-name-of-a-probe-file.h5") == \
        "a-very-long-file-name-of-a-p"
