"""A bare transformer forward for sentence-transformers models that are only a transformer,
mean pooling and L2 normalisation (all-MiniLM-L6-v2, the pinned embedder, is one).

Same rows as `SentenceTransformer.encode(texts, normalize_embeddings=True)` (max abs difference
~1e-7 on the pinned MiniLM), at about a quarter of the CPU: texts are tokenised once (truncated
to the model's `max_seq_length`, 256 tokens for MiniLM), sorted by token length, run in batches
of `BATCH_SIZE` padded only to the batch's longest text under `torch.inference_mode`, then
mean-pooled over the attention mask and L2-normalised: the Transformer -> Pooling(mean) ->
Normalize pipeline of the folder's `modules.json` and `1_Pooling/config.json`, step for step.
Measured on one CPU thread, 800 relevance texts (requests and 25-word response probes, 25k
tokens): sentence-transformers' encode 490 s at batch 64 and 275 s at 16, this path 78 s at 16
and 125 s at 64 (a CPU shared by many jobs; the ratios are what counts).

`mean_pool_encoder(st_model)` returns None for any other pipeline (CLS/max pooling, default
prompts, lower-casing done by sentence-transformers, extra modules, per-task lengths) and for
a pipeline whose output it does not reproduce on `PROBES` (checked once, at load): callers then
keep `SentenceTransformer.encode`, so a sentence-transformers release that changes a step falls
back rather than drifting.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BATCH_SIZE = 16  # on 1 CPU thread: 78 s at 16 vs 125 s at 64 for the same 800 texts
PROBE_ATOL = 1e-4  # allowed |difference| from the pipeline on PROBES (observed ~1e-7)
PROBES = ("I'm sorry, but I can't help with that.",
          "Mix flour, water, salt and yeast; knead, let it rise, then bake at 230 °C.",
          "A long answer that runs past the truncation length of the model. " * 40, "")
_TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


@dataclass
class MeanPoolEncoder:
    """Transformer forward + masked mean + L2 norm, for `mean_pool_encoder`'s models.

    Example:
        fast = mean_pool_encoder(load_embedder().model)
        fast.encode(["hello there"]).shape  # (1, 384)
    """

    model: Any = field(repr=False)  # a transformers encoder returning `last_hidden_state`
    tokenizer: Any = field(repr=False)
    max_length: int

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE) -> np.ndarray:
        """Float32 `[len(texts), hidden]`, each row L2-normalised (an empty text: [CLS] [SEP])."""
        import torch

        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        out = np.zeros((len(ids), int(self.model.config.hidden_size)), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        pad = self.tokenizer.pad_token_id or 0
        self.model.eval()
        with torch.inference_mode():
            for s in range(0, len(order), max(1, batch_size)):
                idx = order[s:s + batch_size]
                inp, mask = batch_tensors([ids[i] for i in idx], pad)
                hidden = self.model(input_ids=inp, attention_mask=mask).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(mean.float(), p=2, dim=1).numpy()
        return out


def _plain_parts(st_model: Any) -> MeanPoolEncoder | None:
    """The encoder for a Transformer -> Pooling(mean) [-> Normalize] pipeline, else None."""
    mods = list(st_model)
    names = [type(m).__name__ for m in mods]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    tr, pool = mods[0], mods[1]
    mode = pool.pooling_mode
    if (mode if isinstance(mode, str) else tuple(mode)) not in ("mean", ("mean",)):
        return None
    if (getattr(st_model, "default_prompt_name", None) or getattr(tr, "do_lower_case", False)
            or getattr(tr, "processing_kwargs", None) or tr.tokenizer is None
            or getattr(tr, "query_length", None) or getattr(tr, "document_length", None)
            or getattr(tr, "modality_config", _TEXT_ONLY) != _TEXT_ONLY
            or not tr.max_seq_length):
        return None
    return MeanPoolEncoder(tr.auto_model, tr.tokenizer, int(tr.max_seq_length))


def mean_pool_encoder(st_model: Any) -> MeanPoolEncoder | None:
    """A `MeanPoolEncoder` equal to `st_model.encode(..., normalize_embeddings=True)` on
    `PROBES`, or None (see the module docstring).

    Example:
        mean_pool_encoder(SentenceTransformer("all-MiniLM-L6-v2", device="cpu"))
    """
    try:
        fast = _plain_parts(st_model)
        if fast is None:
            return None
        want = st_model.encode(list(PROBES), convert_to_numpy=True, normalize_embeddings=True,
                               show_progress_bar=False)
        diff = float(np.abs(fast.encode(PROBES) - np.asarray(want, dtype=np.float32)).max())
    except Exception as e:  # an unexpected module layout in another sentence-transformers
        log.info("bare mean-pooling forward unavailable (%s: %s)", type(e).__name__, e)
        return None
    if not diff <= PROBE_ATOL:
        log.warning("bare mean-pooling forward differs from sentence-transformers by %.2g; "
                    "using sentence-transformers' encode", diff)
        return None
    return fast


def batch_tensors(ids: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """Right-padded `input_ids` and `attention_mask` tensors `[batch, longest]`."""
    import torch

    width = max(len(x) for x in ids)
    inp = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        inp[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
    return inp, mask
