"""The probe HDF5 file: schema, a streaming writer, and readers for notebooks.

Schema (version 1), one file per extraction:

* ``/acts/<site>/<layer>``: ``(n_prompts, n_positions, d_model)``, float16 or float32, chunked one
  chunk per extraction batch ``(batch_size, n_positions, d_model)`` and compressed (lzf by default,
  or gzip). ``<site>`` is a short site kind (``resid_pre``, ``resid_post``, ...), ``<layer>`` the
  decimal layer index.
* ``/prompt_ids``: ``(n_prompts,)`` UTF-8 strings, the prompt ids of the rows.
* ``/labels``: ``(n_prompts,)`` int8, 1 = harmful, 0 = harmless.
* ``/prompts``: ``(n_prompts,)`` UTF-8 strings, the raw user prompts (not the chat-formatted text).
* root attributes: ``schema_version``, ``model``, ``fingerprint`` (`identity.model_fingerprint`),
  ``n_layers``, ``d_model``, ``sites`` and ``layers`` (lists), ``positions`` (kind), ``n_post``
  (post-instruction tokens of the template), ``n_positions``, ``dtype``, ``backend``, ``split``,
  ``adapter`` ("" if none), ``compression``, ``complete`` (True once every row is written).

Rows are in extraction order (longest prompt first, so batches pad little); use ``labels`` and
``prompt_ids``, never the row index, to know which prompt a row is. A file is written under a
temporary name and renamed when complete, so a file with the final name is always whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from refusalscope.errors import UserError

SCHEMA_VERSION = 1
COMPRESSIONS = ("lzf", "gzip", "none")
DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class ProbeMeta:
    """Root attributes of a probe file (everything but the arrays)."""

    model: str
    fingerprint: str
    n_layers: int
    d_model: int
    sites: tuple[str, ...]
    layers: tuple[int, ...]
    positions: str
    n_post: int
    n_positions: int
    dtype: str
    backend: str
    split: str = "direction"
    adapter: str = ""
    compression: str = "lzf"

    def to_attrs(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["sites"], d["layers"] = list(self.sites), list(self.layers)
        return d

    @classmethod
    def from_attrs(cls, attrs: Any) -> ProbeMeta:
        kw = {k: attrs[k] for k in cls.__dataclass_fields__ if k in attrs}
        kw = {k: v.item() if isinstance(v, np.generic) else v for k, v in kw.items()}
        kw["sites"] = tuple(str(s) for s in attrs["sites"])
        kw["layers"] = tuple(int(x) for x in attrs["layers"])
        return cls(**kw)


class ProbeWriter:
    """Stream activation batches into a probe file; `close()` renames it into place.

    Example:
        with ProbeWriter(path, meta, ids, labels, prompts, batch_size=16) as w:
            w.write(0, {("resid_pre", 3): acts})  # acts: (batch, n_positions, d_model)
    """

    def __init__(self, path: str | Path, meta: ProbeMeta, prompt_ids: Sequence[str],
                 labels: Sequence[int], prompts: Sequence[str], *, batch_size: int):
        import h5py

        if meta.compression not in COMPRESSIONS:
            raise UserError(f"unknown compression {meta.compression!r}: one of "
                            f"{', '.join(COMPRESSIONS)}")
        if meta.dtype not in DTYPES:
            raise UserError(f"unknown dtype {meta.dtype!r}: one of {', '.join(DTYPES)}")
        self.path = Path(path)
        if self.path.exists():
            raise UserError(f"{self.path} exists; refusing to overwrite it")
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.n = len(prompt_ids)
        self.meta = meta
        self.f = h5py.File(self.tmp, "w")
        str_t = h5py.string_dtype("utf-8")
        self.f.create_dataset("prompt_ids", data=list(prompt_ids), dtype=str_t)
        self.f.create_dataset("labels", data=np.asarray(labels, dtype=np.int8))
        self.f.create_dataset("prompts", data=list(prompts), dtype=str_t)
        for k, v in meta.to_attrs().items():
            self.f.attrs[k] = v
        self.f.attrs["schema_version"] = SCHEMA_VERSION
        self.f.attrs["complete"] = False
        comp = None if meta.compression == "none" else meta.compression
        chunk = (max(1, min(batch_size, self.n)), meta.n_positions, meta.d_model)
        self.ds = {}
        for site in meta.sites:
            for layer in meta.layers:
                self.ds[(site, layer)] = self.f.create_dataset(
                    f"acts/{site}/{layer}", shape=(self.n, meta.n_positions, meta.d_model),
                    dtype=meta.dtype, chunks=chunk, compression=comp)
        self.rows = 0

    def write(self, start: int, acts: dict[tuple[str, int], Any]) -> None:
        """Write rows `start:start+batch` of every `(site, layer)` dataset."""
        for key, x in acts.items():
            # via float32: numpy has no bfloat16 (the default model dtype on a GPU)
            arr = x.detach().float().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
            self.ds[key][start:start + arr.shape[0]] = arr.astype(self.meta.dtype, copy=False)
        self.rows = max(self.rows, start + next(iter(acts.values())).shape[0])

    def close(self) -> Path:
        """Mark complete and rename into place (only when every row was written)."""
        if self.rows != self.n:
            raise RuntimeError(f"probe file has {self.rows} of {self.n} rows")
        self.f.attrs["complete"] = True
        self.f.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self.f.id.valid:
            self.f.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> ProbeWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@contextmanager
def _h5(path: str | Path) -> Iterator[Any]:
    """Open a probe file read-only; a missing, corrupt, truncated or unfinished one -> UserError."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise UserError(f"no probe file at {p}")
    try:
        f = h5py.File(p, "r")
    except OSError as e:
        raise UserError(f"{p} is not a readable HDF5 file (corrupt or truncated?): "
                        f"{str(e).splitlines()[0]}") from None
    try:
        if "schema_version" not in f.attrs or "acts" not in f:
            raise UserError(f"{p} is an HDF5 file but not a refusalscope probe file")
        if int(f.attrs["schema_version"]) > SCHEMA_VERSION:
            raise UserError(f"{p} has probe schema {int(f.attrs['schema_version'])}; this "
                            f"refusalscope reads up to {SCHEMA_VERSION}: upgrade refusalscope")
        if not bool(f.attrs.get("complete", False)):
            raise UserError(f"{p} is an unfinished probe file (its extraction did not complete)")
        yield f
    finally:
        f.close()


def read_meta(path: str | Path) -> ProbeMeta:
    with _h5(path) as f:
        return ProbeMeta.from_attrs(f.attrs)


def _dataset(f: Any, path: Path, site: str, layer: int) -> Any:
    key = f"acts/{site}/{layer}"
    if key not in f:
        meta = ProbeMeta.from_attrs(f.attrs)
        raise UserError(f"{path} has no activations for site {site!r} layer {layer} "
                        f"(sites {', '.join(meta.sites)}; layers {_ranges(meta.layers)})")
    return f[key]


def load_activations(path: str | Path, site: str, layer: int, *, dtype: str | None = None,
                     rows: slice = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """`(acts, labels)`: `acts` is `(n_prompts, n_positions, d_model)`, labels 1 = harmful
    (only `rows` of both when given: a slice reads just those chunks).

    Example:
        x, y = load_activations("probe.h5", "resid_pre", 12)
        direction = x[y == 1, -1].mean(0) - x[y == 0, -1].mean(0)
    """
    p = Path(path)
    with _h5(p) as f:
        try:
            acts = _dataset(f, p, site, int(layer))[rows]
            labels = f["labels"][rows].astype(np.int64)
        except OSError as e:  # a damaged chunk surfaces only when it is read
            raise UserError(f"{p}: cannot read {site}/{layer} (corrupt file?): "
                            f"{str(e).splitlines()[0]}") from None
    return (acts.astype(dtype) if dtype else acts), labels


class ProbeFile:
    """A probe file opened for reading: metadata, labels, prompts and per-layer arrays.

    Example:
        pf = open_probe("artifacts/runs/<run>/activations.h5")
        x = pf.acts("resid_pre", 12)          # np.ndarray (n_prompts, n_positions, d_model)
        harmful = x[pf.labels == 1]
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with _h5(self.path) as f:
            self.meta = ProbeMeta.from_attrs(f.attrs)
            self.labels = f["labels"][()].astype(np.int64)
            self.prompt_ids = [s.decode() if isinstance(s, bytes) else s
                               for s in f["prompt_ids"][()]]
            self.prompts = [s.decode() if isinstance(s, bytes) else s for s in f["prompts"][()]]

    def acts(self, site: str, layer: int, rows: slice = slice(None)) -> np.ndarray:
        return load_activations(self.path, site, layer, rows=rows)[0]

    def torch(self, site: str, layer: int) -> Any:
        import torch

        return torch.from_numpy(self.acts(site, layer))

    def __repr__(self) -> str:
        m = self.meta
        return (f"ProbeFile({self.path.name}: {m.model}, {len(self.labels)} prompts, sites "
                f"{list(m.sites)}, layers {_ranges(m.layers)}, positions {m.positions} x "
                f"{m.n_positions}, {m.dtype})")


def open_probe(path: str | Path) -> ProbeFile:
    """Open a probe file for a notebook; see `ProbeFile`."""
    return ProbeFile(path)


def check_fingerprint(path: str | Path, fingerprint: str) -> None:
    """Refuse a probe file computed on another model (other weights or adapter)."""
    meta = read_meta(path)
    if meta.fingerprint != fingerprint:
        raise UserError(f"{path} was computed on another model ({meta.model}, fingerprint "
                        f"{meta.fingerprint}; loaded model has {fingerprint})")


def write_prompts_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Prompt metadata beside the HDF5 file, one JSON line per row in file order."""
    from refusalscope.fileio import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n"
                                    for r in rows))


def _ranges(xs: Sequence[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    out: list[str] = []
    xs = sorted(xs)
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(out)
