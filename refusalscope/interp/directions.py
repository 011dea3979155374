"""Difference-in-means refusal directions for every layer x position, and `directions.h5`.

Harmful and harmless prompts are streamed through the model in batches; a read-only hook on every
layer's residual site (`resid_pre` by default, the site Arditi et al. 2024 use) gathers the chosen
positions and adds them into float64 sums, so memory stays `O(n_layers * n_pos * d_model)` whatever
the number of prompts.

`directions.h5` schema (all arrays float64):

* attributes: ``model``, ``fingerprint`` (see `identity.model_fingerprint`), ``site``,
  ``positions`` (kind), ``n_post``, ``n_harmful``, ``n_harmless``, ``selected_layer`` and
  ``selected_pos`` (-1 when nothing is selected), ``selected_norm``, ``schema``, and any
  extra scalar attributes the selection recorded (``kl_threshold``, ``filter_passed``, ...)
* ``mean_harmful``, ``mean_harmless``: ``(n_layers, n_pos, d_model)``
* ``direction``: ``(d_model,)`` unit vector of the selected candidate (absent when none)
* ``metrics/<column>``: one 1-D dataset per column of the selection table (one row per candidate)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refusalscope.errors import UserError

log = logging.getLogger(__name__)

SCHEMA = 1
READ_SITES = ("resid_pre", "resid_mid", "resid_post")


@dataclass
class Directions:
    """Class means per layer x position, and the selected refusal direction (if any)."""

    model: str
    fingerprint: str
    site: str
    positions: str
    n_post: int
    n_harmful: int
    n_harmless: int
    mean_harmful: np.ndarray = field(repr=False)  # (n_layers, n_pos, d_model) float64
    mean_harmless: np.ndarray = field(repr=False)
    selected: tuple[int, int] | None = None  # (layer, position index)
    metrics: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    attrs: dict[str, Any] = field(default_factory=dict)  # extra scalars, e.g. kl_threshold

    @property
    def diff(self) -> np.ndarray:
        """Difference in means, harmful - harmless: `(n_layers, n_pos, d_model)`."""
        return self.mean_harmful - self.mean_harmless

    @property
    def n_layers(self) -> int:
        return int(self.mean_harmful.shape[0])

    def unit(self, layer: int, pos: int) -> np.ndarray:
        """The unit direction of one candidate, `(d_model,)`."""
        v = self.diff[layer, pos]
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def selected_direction(self) -> np.ndarray:
        """The selected unit direction; a UserError if the file has none."""
        if self.selected is None:
            raise UserError("this directions file has no selected direction "
                            "(run `refusalscope probe sweep` with selection)")
        return self.unit(*self.selected)

    def selected_norm(self) -> float:
        if self.selected is None:
            return float("nan")
        return float(np.linalg.norm(self.diff[self.selected]))


def chat_texts(handle: Any, prompts: Sequence[Any]) -> list[str]:
    """Each prompt (a string or anything with `.prompt`) wrapped in the model's chat template,
    as the model reads it."""
    return [handle.format_prompt(p if isinstance(p, str) else p.prompt) for p in prompts]


def iter_activations(handle: Any, texts: Sequence[str], *, kind: str, n_post: int,
                     site: str = "resid_pre", batch_size: int = 16,
                     interventions: Sequence[tuple[str, Any]] = ()):  # type: ignore[no-untyped-def]
    """Yield `(acts, logits_last)` per batch: acts `(batch, n_layers, n_pos, d)` float64 on CPU
    at `kind` positions of `site` in every layer; logits `(batch, vocab)` at the last token.

    `interventions` are installed before the read hooks, so reads see their effect.
    """
    import torch

    from refusalscope.interp.positions import gather
    from refusalscope.models.sites import site_name

    if site not in READ_SITES:
        raise UserError(f"unknown direction site {site!r}: one of {', '.join(READ_SITES)}")
    tok = handle.tokenizer
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start:start + batch_size])
        enc = tok(batch, return_tensors="pt", padding=True,
                  add_special_tokens=not handle.has_chat_template).to(handle.device)
        mask = enc["attention_mask"]
        got: dict[int, Any] = {}

        def reader(layer: int):  # type: ignore[no-untyped-def]
            def fn(x, site_):  # type: ignore[no-untyped-def]
                got[layer] = gather(x.detach(), mask, kind, n_post).to("cpu", torch.float64)
            return fn

        reads = [(site_name(i, site), reader(i)) for i in range(handle.n_layers)]
        with torch.inference_mode(), handle.hooks([*interventions, *reads]):
            logits = handle.model(**enc, logits_to_keep=1).logits[:, -1, :]
        logits = logits.to("cpu", torch.float32)
        yield torch.stack([got[i] for i in range(handle.n_layers)], dim=1), logits


def class_means(handle: Any, texts: Sequence[str], *, kind: str, n_post: int,
                site: str = "resid_pre", batch_size: int = 16) -> np.ndarray:
    """Mean activation `(n_layers, n_pos, d_model)` over `texts`, summed in float64."""
    if not texts:
        raise UserError("no prompts to compute a direction from")
    total = None
    for acts, _ in iter_activations(handle, texts, kind=kind, n_post=n_post, site=site,
                                    batch_size=batch_size):
        s = acts.sum(0)
        total = s if total is None else total + s
    return (total / len(texts)).numpy()


def compute_directions(handle: Any, harmful: Sequence[Any], harmless: Sequence[Any], *,
                       kind: str = "post-instruction", site: str = "resid_pre",
                       batch_size: int = 16) -> Directions:
    """Class means of harmful and harmless prompts (strings or `Prompt`s), no selection yet.

    Example:
        d = compute_directions(h, load_split("direction", n=64),
                               load_split("direction", harmless=True, n=64))
    """
    from refusalscope.interp.identity import model_fingerprint
    from refusalscope.interp.positions import check_kind, post_instruction_count

    check_kind(kind)
    n_post = post_instruction_count(handle)
    mh = class_means(handle, chat_texts(handle, harmful), kind=kind, n_post=n_post, site=site,
                     batch_size=batch_size)
    ml = class_means(handle, chat_texts(handle, harmless), kind=kind, n_post=n_post, site=site,
                     batch_size=batch_size)
    return Directions(model=handle.name, fingerprint=model_fingerprint(handle), site=site,
                      positions=kind, n_post=n_post, n_harmful=len(harmful),
                      n_harmless=len(harmless), mean_harmful=mh, mean_harmless=ml)


# -- file --------------------------------------------------------------------------------------
def save_directions(path: str | Path, d: Directions) -> Path:
    """Write `directions.h5` (refuses to overwrite an existing file)."""
    import h5py

    p = Path(path)
    if p.exists():
        raise UserError(f"{p} exists; not overwriting finished work")
    tmp = p.with_name(p.name + ".part")
    with h5py.File(tmp, "w") as f:
        a = f.attrs
        a.update(model=d.model, fingerprint=d.fingerprint, site=d.site, positions=d.positions,
                 n_post=d.n_post, n_harmful=d.n_harmful, n_harmless=d.n_harmless, schema=SCHEMA,
                 selected_layer=-1 if d.selected is None else d.selected[0],
                 selected_pos=-1 if d.selected is None else d.selected[1],
                 selected_norm=d.selected_norm(), extra=json.dumps(d.attrs, sort_keys=True))
        f.create_dataset("mean_harmful", data=d.mean_harmful.astype(np.float64))
        f.create_dataset("mean_harmless", data=d.mean_harmless.astype(np.float64))
        if d.selected is not None:
            f.create_dataset("direction", data=d.selected_direction())
        g = f.create_group("metrics")
        for k, v in d.metrics.items():
            g.create_dataset(k, data=np.asarray(v))
    tmp.replace(p)
    return p


def load_directions(path: str | Path, handle: Any = None) -> Directions:
    """Read `directions.h5`; with `handle`, check it was computed on that model.

    Every failure (missing, corrupt, wrong schema, other model, other shape) is one UserError.
    """
    import h5py

    p = Path(path)
    if not p.is_file():
        raise UserError(f"no directions file at {p}")
    try:
        with h5py.File(p, "r") as f:
            a = dict(f.attrs)
            d = Directions(
                model=str(a["model"]), fingerprint=str(a["fingerprint"]), site=str(a["site"]),
                positions=str(a["positions"]), n_post=int(a["n_post"]),
                n_harmful=int(a["n_harmful"]), n_harmless=int(a["n_harmless"]),
                mean_harmful=f["mean_harmful"][()], mean_harmless=f["mean_harmless"][()],
                selected=None if int(a["selected_layer"]) < 0
                else (int(a["selected_layer"]), int(a["selected_pos"])),
                metrics={k: v[()] for k, v in f["metrics"].items()},
                attrs=json.loads(str(a.get("extra", "{}"))))
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise UserError(f"{p} is not a readable directions file: "
                        f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    for k, v in d.metrics.items():  # h5py returns bytes for string columns
        if v.dtype.kind in "SO":
            d.metrics[k] = v.astype(str)
    if handle is not None:
        check_model(d, handle, p)
    return d


def check_model(d: Directions, handle: Any, path: str | Path = "directions file") -> None:
    """UserError unless `d` was computed on `handle`'s model (fingerprint and shape)."""
    from refusalscope.interp.identity import model_fingerprint

    if d.mean_harmful.shape[0] != handle.n_layers or d.mean_harmful.shape[-1] != handle.d_model:
        raise UserError(f"{path}: shape {d.mean_harmful.shape} does not fit {handle.name} "
                        f"({handle.n_layers} layers, d_model {handle.d_model})")
    fp = model_fingerprint(handle)
    if fp != d.fingerprint and handle.adapter and _base_fingerprint(handle) == d.fingerprint:
        # directions of the base model on an adapter over it: the defense study's use
        log.info("%s was computed on the base model of this adapter", path)
        return
    if fp != d.fingerprint:
        raise UserError(f"{path} was computed on another model ({d.model}, fingerprint "
                        f"{d.fingerprint}); this model's fingerprint is {fp}")


def _base_fingerprint(handle: Any) -> str:
    """The fingerprint `handle`'s base model has without its adapter."""
    from types import SimpleNamespace

    from refusalscope.interp.identity import model_fingerprint

    return model_fingerprint(SimpleNamespace(base_model=handle.base_model, adapter=None,
                                             n_layers=handle.n_layers, d_model=handle.d_model,
                                             layers=handle.layers))
