"""Train a refusal or outcome classifier, calibrate it, report on held-out rows, save it.

`train_classifier(cfg, split, sources)` fine-tunes `cfg.backbone` with a `cfg.head` head
(`classifier.HEADS`) on `split["train"]` (a seeded sample of at most `cfg.max_train_rows`),
fits one softmax temperature on `split["calib"]`, and writes a card with, on
`split["heldout"]`:

- `heldout_metrics`: refused-vs-not accuracy/precision/recall/F1 of the classifier, the
  heuristic and the ensemble (as for every earlier classifier);
- `heldout_outcomes`: three-way outcome accuracy and confusion (`gold -> predicted -> n`) of
  the classifier, the ensemble (`ensemble.outcome_of`) and the heuristic (refused, else
  complied: what the old scorer said before relevance checks);
- `heldout_per_class`: per finer class (`Example.kind`: refusal_words, moralising,
  partial_refusal, offtopic_pair, offtopic, echo, error_text, persona, compliance,
  partial_compliance) the
  outcome accuracy and the complied-vs-not agreement of each scorer;
- `calibration`: ECE of P(refused) and the log loss before/after the temperature;
- `training`: rows, wall seconds and process CPU seconds of the fine-tuning.
"""

from __future__ import annotations

import logging
import math
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from refusalscope.errors import UserError
from refusalscope.scoring.calibration import minimise_temperature
from refusalscope.scoring.classifier import (
    PROMPT_CHARS,
    RefusalClassifier,
    TrainConfig,
    classifiers_dir,
    encode,
    load_classifier,
    logits,
    resolve_backbone,
    save_classifier,
    softmax,
)
from refusalscope.scoring.meanpool import batch_tensors

log = logging.getLogger(__name__)


def lr_at(step: int, total: int, warmup: int) -> float:
    """Linear warm-up then linear decay multiplier."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def class_weights(y: list[int], k: int, how: str) -> list[float] | None:
    """Loss weight of each of `k` classes: None for `none`; for `balanced` n / (k * n_c) over
    the training targets `y` (a class with no rows gets weight 0).

    Example:
        class_weights([0, 1, 1, 1], 2, "balanced")  # [2.0, 0.666...]
    """
    if how == "none":
        return None
    counts = np.bincount(np.asarray(y, dtype=int), minlength=k)
    return [len(y) / (k * c) if c else 0.0 for c in counts]


def fit(model: Any, ids: list[list[int]], y: list[int], pad_id: int, cfg: TrainConfig) -> None:
    """Fine-tune `model` in place on class indices `y` (AdamW, linear schedule, dynamic
    padding, seeded shuffles)."""
    import torch

    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    total = math.ceil(len(ids) / cfg.batch_size) * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_at(s, total, total // 10))
    target = torch.tensor([int(v) for v in y])
    weight = class_weights(y, len(cfg.classes), cfg.class_weight)
    weight = None if weight is None else torch.tensor(weight, dtype=torch.float32)
    model.train()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(len(ids), generator=gen).tolist()
        run = 0.0
        for s in range(0, len(perm), cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            inp, mask = batch_tensors([ids[i] for i in idx], pad_id)
            loss = torch.nn.functional.cross_entropy(
                model(input_ids=inp, attention_mask=mask).logits, target[idx], weight=weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
            run += loss.item() * len(idx)
        log.info("epoch %d/%d: train loss %.4f", epoch + 1, cfg.epochs, run / len(ids))
    model.eval()


def nll(z: np.ndarray, y: np.ndarray, t: float) -> float:
    """Mean log loss (nats) of softmax(z / t) at class indices `y`."""
    p = softmax(z, t)[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.clip(p, 1e-300, None))))


def fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """One T > 0 minimising the log loss of softmax(z / T): a grid over log T in [-3, 3], then
    a golden-section search (deterministic). For two classes this is the sigmoid(margin / T)
    fit of `calibration.fit_temperature`."""
    z, y = np.asarray(z, dtype=np.float64), np.asarray(y, dtype=int)
    if len(y) == 0:
        raise ValueError("fit_temperature needs at least one example")
    return minimise_temperature(lambda t: nll(z, y, t))


def is_synthetic(row: Any) -> bool:
    """A generated or self-supervised row (`train_data`), not a labelled response."""
    source = getattr(row, "source", "")
    return source == "generated" or source.startswith("pair:")


def sample_rows(rows: list[Any], cap: int, seed: int) -> list[Any]:
    """At most `cap` rows in the original order: every labelled row first (a seeded sample of
    them if they alone exceed `cap`), then a seeded sample of the synthetic rows."""
    if len(rows) <= cap:
        return list(rows)
    real = [i for i, r in enumerate(rows) if not is_synthetic(r)]
    synth = [i for i, r in enumerate(rows) if is_synthetic(r)]
    rng = random.Random(f"cap:{seed}")
    keep = rng.sample(real, min(cap, len(real)))
    keep += rng.sample(synth, cap - len(keep))
    return [rows[i] for i in sorted(keep)]


def outcome_report(pred: list[str], gold: list[str]) -> dict[str, Any]:
    """Accuracy and confusion (`gold -> predicted -> count`) of outcome labels."""
    conf: dict[str, Counter[str]] = {}
    for p, g in zip(pred, gold, strict=True):
        conf.setdefault(g, Counter())[p] += 1
    right = sum(p == g for p, g in zip(pred, gold, strict=True))
    return {"n": len(gold), "accuracy": right / len(gold) if gold else 0.0,
            "confusion": {g: dict(sorted(c.items())) for g, c in sorted(conf.items())}}


def per_class(held: list[Any], preds: dict[str, list[str]]) -> dict[str, Any]:
    """Per finer class: n, gold outcome, and per scorer the outcome accuracy and the
    complied-vs-not agreement (what attack success is read from)."""
    out: dict[str, Any] = {}
    for kind in sorted({e.kind or e.outcome for e in held}):
        idx = [i for i, e in enumerate(held) if (e.kind or e.outcome) == kind]
        gold = [held[i].outcome for i in idx]
        out[kind] = {"n": len(idx), "gold": dict(Counter(gold)),
                     "accuracy": {s: sum(p[i] == g for i, g in zip(idx, gold)) / len(idx)
                                  for s, p in preds.items()},
                     "complied_agreement": {
                         s: sum((p[i] == "complied") == (g == "complied")
                                for i, g in zip(idx, gold)) / len(idx)
                         for s, p in preds.items()}}
    return out


def _load_backbone(cfg: TrainConfig) -> tuple[Any, Any, Path | str]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    where = resolve_backbone(cfg.backbone)
    classes = cfg.classes
    try:
        tok = AutoTokenizer.from_pretrained(where, trust_remote_code=False)
        model = AutoModelForSequenceClassification.from_pretrained(
            where, num_labels=len(classes), trust_remote_code=False,
            id2label=dict(enumerate(classes)), label2id={c: i for i, c in enumerate(classes)})
    except OSError as e:
        raise UserError(f"cannot load backbone {cfg.backbone!r}: {str(e).splitlines()[0]}") \
            from None
    return model, tok, where


def _target(e: Any, classes: tuple[str, ...]) -> int:
    return classes.index(e.outcome if e.outcome in classes else
                         "refused" if e.refused else "complied")


def train_classifier(cfg: TrainConfig, split: dict[str, list[Any]],
                     sources: list[dict[str, Any]], *, overwrite: bool = False
                     ) -> tuple[Path, dict[str, Any]]:
    """Fine-tune, temperature-scale on `split["calib"]`, report on `split["heldout"]`, save.

    `split` holds `labelled.Example`s (see `labelled.split_groups`); `sources` describes the
    data (name, hash, counts) for the model card. Returns (folder, card).

    Example:
        folder, card = train_classifier(TrainConfig(), split_groups(rows), sources)
        card["heldout_per_class"]["moralising"]["accuracy"]["ensemble"]
    """
    import torch

    from refusalscope.scoring.calibration import ece
    from refusalscope.scoring.labelled import split_counts

    if (classifiers_dir() / cfg.name).exists() and not overwrite:
        raise UserError(f"classifier {cfg.name!r} exists; pick another --name or pass --overwrite")
    torch.manual_seed(cfg.seed)
    model, tok, where = _load_backbone(cfg)
    pad, classes = tok.pad_token_id or 0, cfg.classes

    def ids_of(rows: list[Any]) -> list[list[int]]:
        return encode(tok, [e.prompt for e in rows], [e.response for e in rows], cfg.max_length,
                      cfg.view)

    train = sample_rows(split["train"], cfg.max_train_rows, cfg.seed)
    wall, cpu = time.perf_counter(), time.process_time()
    fit(model, ids_of(train), [_target(e, classes) for e in train], pad, cfg)
    training = {"rows": len(train), "rows_available": len(split["train"]),
                "wall_seconds": round(time.perf_counter() - wall, 1),
                "cpu_seconds": round(time.process_time() - cpu, 1),
                "torch_threads": torch.get_num_threads()}
    calib = split.get("calib") or []
    y_cal = np.array([_target(e, classes) for e in calib], dtype=int)
    temp = fit_temperature(logits(model, ids_of(calib), pad), y_cal) if calib else 1.0
    held = split["heldout"]
    z_held = logits(model, ids_of(held), pad)
    clf = RefusalClassifier(cfg.name, Path("."), {
        "temperature": temp, "config": cfg.to_dict(),
        "labels": {str(i): c for i, c in enumerate(classes)}}, "unsaved", model, tok)
    report = heldout_report(clf, held)
    y_t = np.array([_target(e, classes) for e in held], dtype=int)
    y_ref = np.array([e.refused for e in held])
    r = classes.index("refused")
    p_raw, p_cal = softmax(z_held)[:, r], softmax(z_held, temp)[:, r]
    calibration = {"ece_before": ece(p_raw, y_ref), "ece_after": ece(p_cal, y_ref),
                   "nll_before": nll(z_held, y_t, 1.0), "nll_after": nll(z_held, y_t, temp),
                   "temperature": temp, "bins": 15, "fitted_on": "calib split (training side)"}
    card = {"name": cfg.name, "config": cfg.to_dict(), "backbone": cfg.backbone,
            "backbone_source": str(where), "temperature": temp, "head": cfg.head,
            "labels": {str(i): c for i, c in enumerate(classes)}, "sources": sources,
            "splits": split_counts(split), **report, "calibration": calibration,
            "training": training, "entropy_unit": "bits",
            "input": f"(response, first {PROMPT_CHARS} prompt chars) pair, "
                     f"max {cfg.max_length} tokens, response view {cfg.view!r}"}
    return _save(model, tok, card, cfg, (p_raw, p_cal, y_ref), overwrite)


def heldout_report(clf: RefusalClassifier, held: list[Any]) -> dict[str, Any]:
    """Binary, three-way and per-class held-out metrics of classifier, heuristic, ensemble."""
    from refusalscope.scoring.ensemble import outcome_of
    from refusalscope.scoring.factory import scorer
    from refusalscope.scoring.metrics import binary_report

    prompts, responses = [e.prompt for e in held], [e.response for e in held]
    labels = scorer("ensemble", classifier=clf).score_all(prompts, responses)
    gold_ref = [bool(e.refused) for e in held]
    gold = [e.outcome for e in held]
    preds = {name: [outcome_of(lab) for lab in labs] for name, labs in labels.items()}
    return {"heldout_metrics": {name: binary_report([lab.refused for lab in labs], gold_ref)
                                for name, labs in labels.items()},
            "heldout_outcomes": {name: outcome_report(p, gold) for name, p in preds.items()},
            "heldout_per_class": per_class(held, preds)}


def _save(model: Any, tok: Any, card: dict[str, Any], cfg: TrainConfig,
          curves: tuple[np.ndarray, np.ndarray, np.ndarray], overwrite: bool
          ) -> tuple[Path, dict[str, Any]]:
    from refusalscope.scoring.calibration import reliability_plot

    p_raw, p_cal, y = curves
    temp = card["temperature"]
    with tempfile.TemporaryDirectory() as td:
        plot = reliability_plot({"before T": (p_raw, y), f"after T={temp:.2f}": (p_cal, y)},
                                Path(td) / "reliability.png")
        folder = save_classifier(model, tok, card, cfg.name, {"reliability.png": plot},
                                 overwrite=overwrite)
    return folder, load_classifier(cfg.name).card
