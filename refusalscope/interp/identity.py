"""A short fingerprint of a loaded model, stored in every HDF5 file the interp commands write, so
a file computed on one model is refused when used with another (same name, other weights too)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def model_fingerprint(handle: Any) -> str:
    """sha256 (16 hex) of model type, layer count, width, vocabulary, adapter (its last two
    path parts: the run id) and a weight sample.

    The sample is the first 64 rows of the input embedding and of the last layer's first weight
    matrix, in float32, so merged or orthogonalised weights get a new fingerprint.
    """
    import torch

    model = handle.base_model
    emb = model.get_input_embeddings().weight
    adapter = "/".join(Path(handle.adapter).parts[-2:]) if handle.adapter else ""
    h = hashlib.sha256()
    for part in (model.config.model_type, handle.n_layers, handle.d_model, emb.shape[0], adapter):
        h.update(str(part).encode() + b"\0")
    last = next(p for p in handle.layers[-1].parameters() if p.dim() == 2)
    with torch.no_grad():
        for w in (emb, last):
            h.update(w[:64].detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
