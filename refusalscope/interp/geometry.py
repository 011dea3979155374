"""Refusal-subspace geometry from probe files: across model sizes and before/after an attack.

Per file and layer (activations at one position index, default the last gathered position):

* ``norm``: ||mean(harmful) - mean(harmless)||, accumulated in float64; ``norm_rel`` divides it
  by the mean activation norm at that layer, so models of different width and scale compare.
* ``probe_acc``: held-out accuracy of a difference-in-means classifier (project on the training
  folds' mean difference, threshold halfway between the two projected class means), stratified
  k-fold (5 by default, seeded). A linear probe with no fitted weights beyond the two means, so
  it cannot overfit 1.5k dimensions from 64 prompts the way an unregularised logistic fit can.
* ``erank``: entropy-based effective rank (Roy & Vetterli 2007), exp(H(p)) with p the normalised
  singular values of the harmful activations minus the harmless mean: near 1 when harmful
  prompts differ from harmless ones along one direction, larger when the difference is spread.

For two files of the same model (same name and shape; an adapter or edited weights may change the
fingerprint), the first is the baseline and per layer we report the cosine between the baseline
and attacked directions, the attacked separation along the baseline direction
((mean_h' - mean_l') . r / ||mean_h - mean_l||, r the baseline unit direction), the norm ratio,
the mean projection of harmful activations on r in both files, the attacked file's own probe
accuracy and the baseline classifier's accuracy on the attacked activations. Verdict: ``rotated``
when the cosine is below `ROTATED_BELOW`, else ``shrunk`` when the norm ratio is below
`SHRUNK_BELOW`, else ``kept``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refusalscope.errors import UserError
from refusalscope.interp.h5io import ProbeMeta, load_activations, read_meta

ROTATED_BELOW = 0.8  # cosine(baseline, attacked direction)
SHRUNK_BELOW = 0.5  # ||attacked direction|| / ||baseline direction||


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    return x[y == 1], x[y == 0]


def diff_in_means(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """mean(harmful) - mean(harmless) of `x` `(n, d)` with labels `y` (1 harmful), float64."""
    h, l = _split(x, y)
    if len(h) == 0 or len(l) == 0:
        raise UserError("need harmful and harmless rows to compute a direction")
    return h.mean(0) - l.mean(0)


def effective_rank(m: np.ndarray) -> float:
    """Roy & Vetterli (2007): exp of the entropy of the normalised singular values of `m`."""
    s = np.linalg.svd(np.asarray(m, dtype=np.float64), compute_uv=False)
    s = s[s > s.max() * 1e-12] if s.size and s.max() > 0 else s[:0]
    if s.size == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def _folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    for label in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == label))
        for i, j in enumerate(idx):
            folds[i % k].append(int(j))
    return [np.array(sorted(f)) for f in folds]


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    h, l = _split(x, y)
    mh, ml = h.mean(0), l.mean(0)
    w = mh - ml
    return w, float(w @ (mh + ml) / 2)


def _accuracy(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray) -> float:
    pred = (np.asarray(x, dtype=np.float64) @ w > b).astype(int)
    return float((pred == y).mean())


def probe_accuracy(x: np.ndarray, y: np.ndarray, *, folds: int = 5, seed: int = 0) -> float:
    """Held-out accuracy of the difference-in-means classifier, stratified k-fold (mean over
    folds). Folds shrink to the smaller class size; at least 2 rows per class are needed."""
    y = np.asarray(y)
    k = min(folds, int((y == 1).sum()), int((y == 0).sum()))
    if k < 2:
        raise UserError("probe accuracy needs at least 2 harmful and 2 harmless prompts")
    accs = []
    for test in _folds(y, k, seed):
        train = np.setdiff1d(np.arange(len(y)), test)
        w, b = _fit(x[train], y[train])
        accs.append(_accuracy(w, b, x[test], y[test]))
    return float(np.mean(accs))


def layer_stats(x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> dict[str, float]:
    """norm, norm_rel, probe_acc, erank of one layer's activations `(n, d)`."""
    x = np.asarray(x, dtype=np.float64)
    d = diff_in_means(x, y)
    h, l = _split(x, y)
    mean_norm = float(np.linalg.norm(x, axis=1).mean())
    return {"norm": float(np.linalg.norm(d)), "norm_rel": float(np.linalg.norm(d) / mean_norm),
            "probe_acc": probe_accuracy(x, y, seed=seed), "erank": effective_rank(h - l.mean(0))}


def _layer(path: str | Path, site: str, layer: int, pos: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_activations(path, site, layer)
    if not -x.shape[1] <= pos < x.shape[1]:
        raise UserError(f"--pos {pos} out of range: {path} has {x.shape[1]} positions per prompt")
    return np.asarray(x[:, pos], dtype=np.float64), y


def probe_path(path: str | Path) -> Path:
    """A probe file, or a probe run folder holding ``activations.h5``."""
    p = Path(path)
    return p / "activations.h5" if p.is_dir() else p


def label(path: str | Path) -> str:
    """A short name for a probe file: its run folder's name when it is a run's activations.h5."""
    p = Path(path)
    return p.parent.name if p.name == "activations.h5" and p.parent.name else p.name


def file_rows(path: str | Path, site: str, pos: int = -1, seed: int = 0) -> list[dict[str, Any]]:
    """One row per layer of one probe file: depth and the `layer_stats` metrics."""
    meta = read_meta(path)
    _check_site(path, meta, site)
    rows = []
    for layer in meta.layers:
        x, y = _layer(path, site, layer, pos)
        rows.append({"file": label(path), "model": meta.model, "adapter": meta.adapter,
                     "layer": layer, "n_layers": meta.n_layers,
                     "rel_depth": layer / meta.n_layers, **layer_stats(x, y, seed=seed)})
    return rows


def shift_rows(base: str | Path, other: str | Path, site: str, pos: int = -1,
               seed: int = 0) -> list[dict[str, Any]]:
    """Per layer: how `other` (same model, e.g. after an attack) moved the baseline direction."""
    mb, mo = read_meta(base), read_meta(other)
    if (mb.model, mb.n_layers, mb.d_model) != (mo.model, mo.n_layers, mo.d_model):
        raise UserError(f"{other} is from {mo.model} ({mo.n_layers} layers, d {mo.d_model}), "
                        f"not the baseline's {mb.model} ({mb.n_layers}, d {mb.d_model})")
    for path, meta in ((base, mb), (other, mo)):
        _check_site(path, meta, site)
    rows = []
    for layer in sorted(set(mb.layers) & set(mo.layers)):
        xb, yb = _layer(base, site, layer, pos)
        xo, yo = _layer(other, site, layer, pos)
        db, do = diff_in_means(xb, yb), diff_in_means(xo, yo)
        with np.errstate(invalid="ignore", divide="ignore"):  # no direction (layer 0): nan rows
            r = db / np.linalg.norm(db)
            cos = float(db @ do / (np.linalg.norm(db) * np.linalg.norm(do)))
            ratio = float(np.linalg.norm(do) / np.linalg.norm(db))
            sep = float(do @ r / np.linalg.norm(db))
        w, b = _fit(xb, yb)
        verdict = ("rotated" if cos < ROTATED_BELOW else
                   "shrunk" if ratio < SHRUNK_BELOW else "kept")
        rows.append({"baseline": label(base), "other": label(other), "layer": layer,
                     "rel_depth": layer / mb.n_layers, "cosine": cos, "norm_ratio": ratio,
                     "separation_along_base": sep,
                     "proj_harmful_base": float((xb[yb == 1] @ r).mean()),
                     "proj_harmful_other": float((xo[yo == 1] @ r).mean()),
                     "probe_acc_other": probe_accuracy(xo, yo, seed=seed),
                     "base_probe_on_other": _accuracy(w, b, xo, yo), "verdict": verdict})
    return rows


def _check_site(path: str | Path, meta: ProbeMeta, site: str) -> None:
    if site not in meta.sites:
        raise UserError(f"{path} has no site {site!r} (it has {', '.join(meta.sites)})")


def compare(paths: Sequence[str | Path], site: str = "resid_pre", pos: int = -1,
            seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`(per-file rows, shift rows)`: every file's layers, and each later file of a model
    against that model's first file."""
    if not paths:
        raise UserError("give at least one probe file")
    file_tab: list[dict[str, Any]] = []
    shift_tab: list[dict[str, Any]] = []
    first: dict[tuple[str, int, int], str | Path] = {}
    for p in map(probe_path, paths):
        meta = read_meta(p)
        file_tab += file_rows(p, site, pos, seed)
        key = (meta.model, meta.n_layers, meta.d_model)
        if key in first:
            shift_tab += shift_rows(first[key], p, site, pos, seed)
        else:
            first[key] = p
    return file_tab, shift_tab
