"""Refusal-direction selection (Arditi et al. 2024, "Refusal in LLMs is mediated by a single
direction") and per-layer metrics.

For every candidate (layer, position) difference-in-means direction r, on validation prompts:

* bypass score: mean refusal score of harmful prompts with r ablated everywhere (lower = better)
* induce score: mean refusal score of harmless prompts with the raw difference added at r's layer
* KL: mean KL(baseline || ablated) of harmless prompts' first-token distributions

A candidate passes when induce > 0, KL < `kl_threshold` and layer < `layer_cut(n_layers)` =
int(`max_layer_frac` * n_layers) (the reference drops `layer >= int(0.8 n)`: 24 layers -> 0-18);
the passing candidate with the lowest bypass score is selected. When none passes, the candidate
with the lowest bypass score among those under the layer cut is taken and `filter_passed` is
False (small models often show this trade-off; the table says which filter failed).

Refusal score: log-odds of the probability mass on the model's refusal first tokens (the first
token of "I", "As", "Sorry", ... as this tokenizer splits them) at the first generated position.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from refusalscope.errors import UserError
from refusalscope.interp.directions import Directions, chat_texts, iter_activations

log = logging.getLogger(__name__)

REFUSAL_WORDS = ("I", "As", "Sorry", "I'm", "Unfortunately")
ProgressFn = Callable[[int, int], None]  # (candidates done, total)


@dataclass(frozen=True)
class SelectConfig:
    """How to select. Saved with the sweep run."""

    kl_threshold: float = 0.1
    max_layer_frac: float = 0.8
    refusal_words: tuple[str, ...] = REFUSAL_WORDS
    layers: tuple[int, ...] | None = None  # candidate layers (None: all below the cut)

    def __post_init__(self) -> None:
        if self.kl_threshold <= 0:
            raise UserError(f"--kl-threshold must be > 0 (got {self.kl_threshold})")
        if not 0 < self.max_layer_frac <= 1:
            raise UserError(f"--max-layer-frac must be in (0, 1] (got {self.max_layer_frac})")
        if not self.refusal_words:
            raise UserError("at least one refusal word is needed")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "refusal_words": list(self.refusal_words),
                "layers": None if self.layers is None else list(self.layers)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SelectConfig:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("refusal_words", "layers"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


ZERO_NORM = 1e-8  # a candidate whose mean difference is shorter than this is no direction


def layer_cut(n_layers: int, max_layer_frac: float) -> int:
    """First layer not considered: `int(max_layer_frac * n_layers)`, the reference's rule
    (its `filter_fn` discards `layer >= int(n_layers * (1 - 0.2))`).

    Example:
        layer_cut(24, 0.8) == 19  # candidates 0..18
    """
    return int(max_layer_frac * n_layers)


def refusal_token_ids(tokenizer: Any, words: Sequence[str] = REFUSAL_WORDS) -> list[int]:
    """Distinct first tokens of `words` as the reply's first word (no leading space)."""
    ids: list[int] = []
    for w in words:
        toks = tokenizer(w, add_special_tokens=False)["input_ids"]
        if toks and toks[0] not in ids:
            ids.append(toks[0])
    return ids


def refusal_scores(logits: Any, ids: Sequence[int]) -> np.ndarray:
    """Per-prompt log-odds of refusal, `log p - log(1 - p)`, p = mass on `ids`; logits `(n, V)`."""
    import torch

    logp = torch.log_softmax(logits.double(), dim=-1)
    lp = torch.logsumexp(logp[:, list(ids)], dim=-1)
    l1p = torch.log1p(-lp.exp().clamp(max=1 - 1e-12))
    return (lp - l1p).numpy()


def first_token_logits(handle: Any, texts: Sequence[str], hooks: Sequence[tuple[str, Any]] = (),
                       batch_size: int = 16) -> Any:
    """Last-position logits `(n, vocab)` float32 for formatted `texts` under `hooks`."""
    import torch

    tok = handle.tokenizer
    out = []
    with torch.inference_mode(), handle.hooks(hooks):
        for s in range(0, len(texts), batch_size):
            enc = tok(list(texts[s:s + batch_size]), return_tensors="pt", padding=True,
                      add_special_tokens=not handle.has_chat_template).to(handle.device)
            logits = handle.model(**enc, logits_to_keep=1).logits[:, -1, :]
            out.append(logits.to("cpu", torch.float32))
    return torch.cat(out)


def mean_kl(base_logits: Any, other_logits: Any) -> float:
    """Mean over prompts of KL(base || other), nats."""
    import torch

    p = torch.log_softmax(base_logits.double(), -1)
    q = torch.log_softmax(other_logits.double(), -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


def layer_metrics(d: Directions, val_h: np.ndarray, val_l: np.ndarray) -> dict[str, np.ndarray]:
    """Per layer x position: direction norm, held-out probe accuracy, cosine to previous layer.

    `val_h`, `val_l`: held-out activations `(n, n_layers, n_pos, d)`. The probe projects on the
    unit direction and thresholds at the midpoint of the two training means' projections.
    """
    diff = d.diff
    norms = np.linalg.norm(diff, axis=-1)  # (L, P)
    units = diff / np.maximum(norms, 1e-12)[..., None]
    mid = ((d.mean_harmful + d.mean_harmless) / 2 * units).sum(-1)  # (L, P)
    ph = np.einsum("nlpd,lpd->nlp", val_h, units)
    pl = np.einsum("nlpd,lpd->nlp", val_l, units)
    acc = ((ph > mid).sum(0) + (pl <= mid).sum(0)) / (len(val_h) + len(val_l))
    cos_prev = np.full(norms.shape, np.nan)
    cos_prev[1:] = (units[1:] * units[:-1]).sum(-1)
    return {"norm": norms, "probe_acc": acc, "cos_prev": cos_prev}


def _val_pass(handle: Any, texts: Sequence[str], d: Directions, batch_size: int):  # type: ignore[no-untyped-def]
    import torch

    acts, logits = [], []
    for a, lg in iter_activations(handle, texts, kind=d.positions, n_post=d.n_post, site=d.site,
                                  batch_size=batch_size):
        acts.append(a)
        logits.append(lg)
    return torch.cat(acts).numpy(), torch.cat(logits)


def select_direction(handle: Any, d: Directions, val_harmful: Sequence[Any],
                     val_harmless: Sequence[Any], cfg: SelectConfig | None = None, *,
                     batch_size: int = 16, on_candidate: ProgressFn | None = None) -> Directions:
    """Score every candidate on validation prompts, fill `d.metrics` and `d.selected`.

    Returns `d` (updated in place). Cost: 3 forward passes over the validation prompts per
    candidate below the layer cut.

    Example:
        d = select_direction(h, compute_directions(h, tr_h, tr_l), va_h, va_l)
    """
    import torch

    from refusalscope.interp import steering

    cfg = cfg or SelectConfig()
    ids = refusal_token_ids(handle.tokenizer, cfg.refusal_words)
    th, tl = chat_texts(handle, val_harmful), chat_texts(handle, val_harmless)
    ah, base_h = _val_pass(handle, th, d, batch_size)
    al, base_l = _val_pass(handle, tl, d, batch_size)
    per = layer_metrics(d, ah, al)
    n_pos = d.mean_harmful.shape[1]
    cut = layer_cut(d.n_layers, cfg.max_layer_frac)  # layers 0..cut-1 are candidates
    rows: dict[str, list[Any]] = {k: [] for k in (
        "layer", "pos", "norm", "probe_acc", "cos_prev", "bypass", "induce", "kl", "passed")}
    wanted = range(cut) if cfg.layers is None else [x for x in cfg.layers if x < cut]
    for x in cfg.layers or ():
        if not 0 <= x < d.n_layers:
            raise UserError(f"candidate layer {x} out of range (model has {d.n_layers} layers)")
    below = [(lay, p) for lay in wanted for p in range(n_pos)]
    if not below:
        raise UserError(f"no candidate layers below the cut (layer < {cut})")
    # a zero mean difference (e.g. layer 0's input at a template token every prompt shares)
    # is no direction: ablating it does nothing, so it cannot be selected
    cands = [(lay, p) for lay, p in below if per["norm"][lay, p] > ZERO_NORM]
    if not cands:
        raise UserError(f"every candidate direction below the cut (layer < {cut}) is zero: "
                        "harmful and harmless activations are identical there")
    for i, (lay, p) in enumerate(cands):
        unit = torch.from_numpy(d.unit(lay, p))
        raw = torch.from_numpy(d.diff[lay, p])
        abl = steering.ablate_hooks(unit, handle.n_layers, parallel=handle.family.parallel)
        ablated = first_token_logits(handle, [*th, *tl], abl, batch_size)  # one pass for both
        bypass = refusal_scores(ablated[:len(th)], ids).mean()
        kl = mean_kl(base_l, ablated[len(th):])
        add = steering.add_hooks(raw, 1.0, [lay], site=d.site)
        induce = refusal_scores(first_token_logits(handle, tl, add, batch_size), ids).mean()
        passed = bool(induce > 0 and kl < cfg.kl_threshold)
        for k, v in (("layer", lay), ("pos", p), ("norm", per["norm"][lay, p]),
                     ("probe_acc", per["probe_acc"][lay, p]), ("cos_prev", per["cos_prev"][lay, p]),
                     ("bypass", float(bypass)), ("induce", float(induce)), ("kl", kl),
                     ("passed", passed)):
            rows[k].append(v)
        if on_candidate is not None:
            on_candidate(i + 1, len(cands))
    scored = set(cands)
    for lay in range(d.n_layers):  # metrics only, not scored
        for p in (q for q in range(n_pos) if (lay, q) not in scored):
            for k, v in (("layer", lay), ("pos", p), ("norm", per["norm"][lay, p]),
                         ("probe_acc", per["probe_acc"][lay, p]),
                         ("cos_prev", per["cos_prev"][lay, p]), ("bypass", np.nan),
                         ("induce", np.nan), ("kl", np.nan), ("passed", False)):
                rows[k].append(v)
    table = {k: np.asarray(v) for k, v in rows.items()}
    ok = table["passed"]
    pool = np.flatnonzero(ok) if ok.any() else np.arange(len(cands))
    best = int(pool[np.argmin(table["bypass"][pool])])
    d.selected = (int(table["layer"][best]), int(table["pos"][best]))
    order = np.lexsort((table["pos"], table["layer"]))
    d.metrics = {k: v[order] for k, v in table.items()}
    d.attrs.update(
        kl_threshold=cfg.kl_threshold, max_layer_frac=cfg.max_layer_frac, layer_cut=cut,
        filter_passed=bool(ok.any()), refusal_token_ids=ids,
        refusal_tokens=[handle.tokenizer.decode([t]) for t in ids],
        baseline_harmful=float(refusal_scores(base_h, ids).mean()),
        baseline_harmless=float(refusal_scores(base_l, ids).mean()),
        n_val_harmful=len(th), n_val_harmless=len(tl))
    if not ok.any():
        log.warning("no candidate passed induce > 0 and KL < %g; took the lowest bypass score",
                    cfg.kl_threshold)
    return d


def summary_table(d: Directions) -> list[dict[str, Any]]:
    """The metrics table as rows (for CSV / markdown), sorted by layer then position."""
    m = d.metrics
    if not m:
        return []
    keys = list(m)
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in zip(keys, vals, strict=True)}
            for vals in zip(*(m[k] for k in keys), strict=True)]
