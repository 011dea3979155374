"""`refusalscope probe`: harmful and harmless prompts -> residual activations in an HDF5 file.

Prompts are formatted with the model's chat template, ordered longest first (little padding),
run in batches through one of the back-ends (`backends`), gathered at the requested token
positions (`positions.gather`) inside the hook and written batch by batch (`h5io.ProbeWriter`),
so memory holds one batch of gathered activations, never the whole set. The file schema is in
`h5io`; a run folder holds ``activations.h5``, ``prompts.jsonl`` (id, label, source, category,
prompt, in file row order) and the manifest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.interp.backends import BACKENDS, check_backend
from refusalscope.interp.h5io import COMPRESSIONS, DTYPES, ProbeMeta, ProbeWriter
from refusalscope.interp.positions import POSITION_KINDS
from refusalscope.models.sites import SITE_KINDS, Site

log = logging.getLogger(__name__)

H5_NAME = "activations.h5"
PROMPTS_NAME = "prompts.jsonl"
ProgressFn = Callable[[int, float], None]  # (prompts done in this batch, seconds)


@dataclass(frozen=True)
class ProbeConfig:
    """What to extract. Saved in the run manifest (batch size and device are runtime options)."""

    model: str
    adapter: str | None = None
    sites: tuple[str, ...] = ("resid_pre",)
    layers: str = "all"  # all | 0-27 | 3,5,7 (resolved against the model when it is loaded)
    positions: str = "post-instruction"
    n: int = 128  # prompts per class (the `direction` split holds 158 harmless)
    dtype: str = "float32"
    backend: str = "native"
    split: str = "direction"
    compression: str = "lzf"
    seed: int = 0

    def __post_init__(self) -> None:
        from refusalscope.data.load import SPLITS

        object.__setattr__(self, "sites", tuple(self.sites))
        if not self.sites:
            raise UserError("--sites is empty: give one or more of " + ", ".join(SITE_KINDS))
        for s in self.sites:
            if s not in SITE_KINDS:
                raise UserError(f"unknown site {s!r}: one of {', '.join(SITE_KINDS)}")
        if self.positions not in POSITION_KINDS:
            raise UserError(f"unknown positions {self.positions!r}: one of "
                            f"{', '.join(POSITION_KINDS)}")
        if self.n < 1:
            raise UserError(f"--n must be at least 1 (got {self.n})")
        if self.dtype not in DTYPES:
            raise UserError(f"unknown --dtype {self.dtype!r}: one of {', '.join(DTYPES)}")
        if self.compression not in COMPRESSIONS:
            raise UserError(f"unknown compression {self.compression!r}: one of "
                            f"{', '.join(COMPRESSIONS)}")
        if self.split not in SPLITS:
            raise UserError(f"unknown split {self.split!r}: one of {', '.join(SPLITS)}")
        check_backend(self.backend)
        parse_layers(self.layers, None)  # syntax now; range once the model is known

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sites"] = list(self.sites)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProbeConfig:
        kw = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "sites" in kw:
            kw["sites"] = tuple(kw["sites"])
        return cls(**kw)


def parse_sites(text: str) -> tuple[str, ...]:
    """``"resid_pre,resid_post"`` -> ``("resid_pre", "resid_post")`` (order kept, no repeats)."""
    out: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part and part not in out:
            out.append(part)
    return tuple(out)


def parse_layers(text: str, n_layers: int | None) -> list[int]:
    """``all`` | ``0-27`` | ``3,5,7`` | ``0-3,10`` -> sorted layer indices, range-checked.

    With `n_layers=None` only the syntax is checked (``all`` -> []).
    """
    text = str(text).strip()
    if text == "all":
        return list(range(n_layers)) if n_layers is not None else []
    layers: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(x) for x in part.split("-", 1))
                if a > b:
                    raise ValueError
                layers.update(range(a, b + 1))
            else:
                layers.add(int(part))
        except ValueError:
            raise UserError(f"bad --layers {text!r}: use all, a range like 0-27, or a list "
                            "like 3,5,7") from None
    if not layers:
        raise UserError(f"bad --layers {text!r}: no layer given")
    if min(layers) < 0:
        raise UserError(f"--layers {text!r}: layer indices start at 0")
    if n_layers is not None and max(layers) >= n_layers:
        raise UserError(f"--layers {text!r}: layer {max(layers)} out of range (model has "
                        f"{n_layers} layers: 0-{n_layers - 1})")
    return sorted(layers)


def probe_prompts(split: str, n: int) -> list[Any]:
    """The first `n` harmful and the first `n` harmless prompts of `split` (harmful first).

    A class with fewer than `n` prompts is a `UserError` naming both class sizes: silently
    probing 256 harmful vs 158 harmless prompts would unbalance every mean and probe.
    """
    from refusalscope.data.load import load_split

    harmful, harmless = load_split(split), load_split(split, harmless=True)
    if n > min(len(harmful), len(harmless)):
        raise UserError(f"--n {n} is more than the {split!r} split holds: {len(harmful)} harmful "
                        f"and {len(harmless)} harmless prompts; use --n "
                        f"{min(len(harmful), len(harmless))} or less")
    return harmful[:n] + harmless[:n]


def _order(handle: Any, prompts: Sequence[Any]) -> tuple[list[Any], dict[str, str]]:
    """Prompts longest-first (ties by id) and their chat-formatted texts."""
    texts = {p.id: handle.format_prompt(p.prompt) for p in prompts}
    if len(texts) != len(prompts):
        raise UserError("prompt ids repeat: each prompt needs its own id")
    lengths = {pid: len(handle.tokenizer(t, add_special_tokens=False)["input_ids"])
               for pid, t in texts.items()}
    return sorted(prompts, key=lambda p: (-lengths[p.id], p.id)), texts


def iter_batches(handle: Any, prompts: Sequence[Any], *, sites: Sequence[str],
                 layers: Sequence[int], positions: str, n_post: int, backend: str = "native",
                 batch_size: int = 16) -> Iterator[tuple[list[Any], dict[tuple[str, int], Any]]]:
    """Yield `(batch prompts, {(site, layer): (batch, n_positions, d_model)})`, longest first.

    Example:
        for batch, acts in iter_batches(h, prompts, sites=["resid_pre"], layers=[3],
                                        positions="last", n_post=5):
            ...
    """
    from refusalscope.interp.backends import open_backend
    from refusalscope.interp.positions import gather

    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    order, texts = _order(handle, prompts)
    site_objs = [Site(layer, kind) for kind in sites for layer in layers]
    tok = handle.tokenizer
    with open_backend(handle, backend) as capture:
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            enc = tok([texts[p.id] for p in batch], return_tensors="pt", padding=True,
                      add_special_tokens=not handle.has_chat_template).to(handle.device)
            mask = enc["attention_mask"]
            acts = capture(dict(enc), site_objs,
                           lambda x, m=mask: gather(x, m, positions, n_post))
            yield batch, acts


def extract(handle: Any, prompts: Sequence[Any], path: str | Path, meta: ProbeMeta, *,
            batch_size: int = 16, on_batch: ProgressFn | None = None) -> Path:
    """Stream activations of `prompts` (with `.label` harmful/harmless) into a probe file.

    Example:
        extract(handle, probe_prompts("direction", 64), "acts.h5", meta_for(handle, cfg))
    """
    order, _ = _order(handle, prompts)
    labels = [1 if p.label == "harmful" else 0 for p in order]
    writer = ProbeWriter(path, meta, [p.id for p in order], labels, [p.prompt for p in order],
                         batch_size=batch_size)
    with writer:
        row = 0
        t0 = time.perf_counter()
        for batch, acts in iter_batches(handle, order, sites=meta.sites, layers=meta.layers,
                                        positions=meta.positions, n_post=meta.n_post,
                                        backend=meta.backend, batch_size=batch_size):
            writer.write(row, acts)
            row += len(batch)
            if on_batch is not None:
                on_batch(len(batch), time.perf_counter() - t0)
            t0 = time.perf_counter()
    return Path(path)


def meta_for(handle: Any, cfg: ProbeConfig) -> ProbeMeta:
    """File attributes for extracting `cfg` from `handle` (layers resolved, range-checked)."""
    from refusalscope.interp.identity import model_fingerprint
    from refusalscope.interp.positions import n_positions, post_instruction_count
    from refusalscope.models.sites import site_name

    layers = parse_layers(cfg.layers, handle.n_layers)
    if "resid_mid" in cfg.sites and handle.family.parallel:
        raise UserError(f"{handle.name} ({handle.config.model_type}) has parallel attention+MLP "
                        "blocks: no resid_mid site; use resid_pre, resid_post, attn_out or mlp_out")
    for s in cfg.sites:
        site_name(0, s)
    n_post = post_instruction_count(handle)
    return ProbeMeta(model=handle.name, fingerprint=model_fingerprint(handle),
                     n_layers=handle.n_layers, d_model=handle.d_model, sites=tuple(cfg.sites),
                     layers=tuple(layers), positions=cfg.positions, n_post=n_post,
                     n_positions=n_positions(cfg.positions, n_post), dtype=cfg.dtype,
                     backend=cfg.backend, split=cfg.split,
                     adapter=handle.adapter or "", compression=cfg.compression)


def run_probe(cfg: ProbeConfig, *, options: Any = None, batch_size: int = 16,
              handle: Any = None, on_start: Callable[[int], None] | None = None,
              on_batch: ProgressFn | None = None) -> Any:
    """Extract into a new run folder (``activations.h5`` + ``prompts.jsonl``); returns the Run."""
    from refusalscope.interp.h5io import write_prompts_jsonl
    from refusalscope.models.handle import ModelHandle
    from refusalscope.runs import Run

    prompts = probe_prompts(cfg.split, cfg.n)  # bad input fails before weights are loaded
    if handle is None:
        handle = ModelHandle.load(cfg.model, adapter=cfg.adapter, options=options)
    meta = meta_for(handle, cfg)
    run = Run.create("probe", cfg.to_dict(), model=cfg.model, seed=cfg.seed,
                     input_runs=[cfg.adapter] if cfg.adapter else None)
    run.manifest.extra.update(meta.to_attrs())
    run.manifest.extra["n_prompts"] = len(prompts)
    run.save()
    if on_start is not None:
        on_start(len(prompts))
    with run.guard():
        order, _ = _order(handle, prompts)
        write_prompts_jsonl(run.file(PROMPTS_NAME), [
            {"row": i, "id": p.id, "label": p.label, "source": p.source,
             "category": p.category, "prompt": p.prompt} for i, p in enumerate(order)])
        extract(handle, prompts, run.file(H5_NAME), meta, batch_size=batch_size,
                on_batch=on_batch)
    run.finish("success")
    return run


def verify(handle: Any, path: str | Path, *, n: int = 4, batch_size: int = 16) -> float:
    """Check that a probe file came from `handle`'s model: same fingerprint (else `UserError`),
    and its first `n` rows re-extracted now match; returns the largest absolute difference.

    Example:
        verify(ModelHandle.load("qwen2.5-coder-0.5b"), "artifacts/runs/<run>/activations.h5")
    """
    import numpy as np

    from refusalscope.data.load import Prompt
    from refusalscope.interp.h5io import check_fingerprint, open_probe
    from refusalscope.interp.identity import model_fingerprint

    check_fingerprint(path, model_fingerprint(handle))
    pf = open_probe(path)
    m = pf.meta
    rows = {pf.prompt_ids[i]: i for i in range(min(n, len(pf.prompt_ids)))}
    prompts = [Prompt(pid, pf.prompts[i], m.split, "harmful" if pf.labels[i] else "harmless",
                      "probe-file") for pid, i in rows.items()]
    worst = 0.0
    stored = {(s, layer): pf.acts(s, layer, rows=slice(0, len(rows)))
              for s in m.sites for layer in m.layers}
    for batch, acts in iter_batches(handle, prompts, sites=m.sites, layers=m.layers,
                                    positions=m.positions, n_post=m.n_post, backend="native",
                                    batch_size=batch_size):
        for key, x in acts.items():
            want = stored[key][[rows[p.id] for p in batch]].astype(np.float32)
            worst = max(worst, float(np.abs(x.float().numpy() - want).max()))
    return worst

