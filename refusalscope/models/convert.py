"""GGUF file → a trusted safetensors folder, and facts about model folders.

Loading a quantised GGUF through transformers de-quantises every tensor (minutes for 1.5B on
CPU); saving the result once as safetensors makes later loads take seconds. A converted folder
is built under a temp name and gets its stamp (``refusalscope.json``) *last*, then is renamed
into place: a folder is trusted only if the stamp exists and names the expected GGUF hash, so
an interrupted conversion never looks finished.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

STAMP = "refusalscope.json"
STAMP_VERSION = 1
WEIGHT_GLOBS = ("*.safetensors", "*.bin")
_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")


def read_stamp(folder: Path) -> dict[str, Any] | None:
    """The stamp of a converted folder, or None if missing or unreadable."""
    try:
        data = json.loads((Path(folder) / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_trusted(folder: Path, sha256: str | None) -> bool:
    """True if `folder` is a finished conversion of the GGUF with hash `sha256`.

    With `sha256=None` any well-formed stamp is accepted (the hash is not known up front).
    """
    stamp = read_stamp(folder)
    if stamp is None or stamp.get("stamp_version") != STAMP_VERSION:
        return False
    if sha256 is not None and stamp.get("sha256") != sha256:
        return False
    return has_weights(Path(folder))


def has_weights(folder: Path) -> bool:
    """A loadable folder: `config.json` plus at least one weights file."""
    folder = Path(folder)
    return (folder / "config.json").is_file() and any(
        any(folder.glob(g)) for g in WEIGHT_GLOBS)


def check_gguf(path: Path) -> str:
    """Parse a GGUF header and tensor table; return its architecture.

    Raises UserError (one line) for a file that is not GGUF, is truncated, or whose tensor
    data runs past the end of the file — before transformers spends minutes on it.
    """
    from gguf import GGUFReader

    path = Path(path)
    try:
        reader = GGUFReader(path)
        size = path.stat().st_size
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
        field = reader.fields.get("general.architecture")
        arch = bytes(field.parts[field.data[0]]).decode() if field else ""
    except (ValueError, KeyError, IndexError, OSError, struct.error, UnicodeDecodeError) as e:
        raise UserError(f"corrupt or truncated GGUF {path}: {_short(e)}") from None
    if not reader.tensors or end > size:
        raise UserError(f"corrupt or truncated GGUF {path}: tensor data needs {end} bytes, "
                        f"file has {size}")
    if not arch:
        raise UserError(f"corrupt GGUF {path}: no general.architecture field")
    return arch


def convert_gguf(gguf: Path, dest: Path, stamp: dict[str, Any], *,
                 trust_remote_code: bool = False) -> Path:
    """Load `gguf` with transformers (fp32), save model + tokenizer as a folder at `dest`.

    `stamp` (name, source, sha256, ...) is written last, into a temp folder beside `dest`
    which is then renamed to `dest`; `dest` must not exist. Returns `dest`.
    """
    gguf, dest = Path(gguf), Path(dest)
    arch = check_gguf(gguf)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}-tmp-"))
    try:
        _load_and_save(gguf, tmp, trust_remote_code=trust_remote_code, arch=arch)
        import transformers

        atomic_write_json(tmp / STAMP, {
            **stamp, "stamp_version": STAMP_VERSION, "gguf_architecture": arch,
            "transformers": transformers.__version__,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
        _readable(tmp)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _readable(folder: Path) -> None:
    """mkdtemp/mkstemp make 0700/0600 entries; a shared cache wants the umask's usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def _load_and_save(gguf: Path, out: Path, *, trust_remote_code: bool, arch: str) -> None:
    """The slow part: de-quantise through transformers and save as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw: dict[str, Any] = {"gguf_file": gguf.name, "trust_remote_code": trust_remote_code}
    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), **kw)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), dtype=torch.float32, **kw)
    except (ValueError, KeyError, IndexError, RuntimeError, NotImplementedError, OSError,
            struct.error, TypeError, AttributeError) as e:
        raise UserError(f"cannot load GGUF {gguf} (architecture {arch!r}): {_short(e)}") from None
    # A GGUF-loaded model carries a quantizer that makes save_pretrained refuse; the weights
    # are already plain fp32 tensors, so dropping it loses nothing.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    template = getattr(tok, "chat_template", None)
    if template and not has_chat_template(out):
        atomic_write_text(out / "chat_template.jinja", template)  # some versions drop it


def has_chat_template(folder: Path) -> bool:
    """Whether a tokenizer folder ships a chat template (file or tokenizer_config key)."""
    folder = Path(folder)
    if any((folder / f).is_file() for f in _TEMPLATE_FILES):
        return True
    try:
        cfg = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(cfg.get("chat_template"))


def count_params(folder: Path) -> int | None:
    """Parameters stored in a folder's safetensors files, read from their headers only.

    Tied weights are stored once, so they count once. None if there is no safetensors file.
    Mistral's own-format copy of the weights (`consolidated*.safetensors`) is not counted twice.
    """
    files = sorted(f for f in Path(folder).glob("*.safetensors")
                   if not f.name.startswith("consolidated"))
    if not files:
        return None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for key, meta in header.items():
            if key != "__metadata__":
                count = 1
                for d in meta["shape"]:
                    count *= d
                total += count
    return total


def folder_facts(folder: Path) -> dict[str, Any]:
    """Architecture, sizes and template presence of a model folder, from its files only."""
    folder = Path(folder)
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    text = cfg.get("text_config") or cfg  # multimodal configs nest the language model
    return {
        "architecture": ",".join(cfg.get("architectures") or []) or cfg.get("model_type"),
        "model_type": cfg.get("model_type"),
        "params": count_params(folder),
        "layers": text.get("num_hidden_layers"),
        "d_model": text.get("hidden_size"),
        "vocab": text.get("vocab_size"),
        "chat_template": has_chat_template(folder),
    }


def gguf_facts(path: Path) -> dict[str, Any]:
    """Architecture, sizes and template presence of a GGUF file, from its header only."""
    from gguf import GGUFReader

    arch = check_gguf(path)
    reader = GGUFReader(path)

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return {
        "architecture": arch,
        "model_type": arch,
        "params": sum(int(t.n_elements) for t in reader.tensors),
        "layers": field(f"{arch}.block_count"),
        "d_model": field(f"{arch}.embedding_length"),
        "vocab": field(f"{arch}.vocab_size") or (len(tokens.data) if tokens else None),
        "chat_template": bool(field("tokenizer.chat_template")),
    }


def _short(e: BaseException) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {msg[:200]}"
