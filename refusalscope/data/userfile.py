"""Read a user's own prompt set: CSV / TSV / JSONL / JSON / parquet, an imported set, or a hub id.

Researchers bring AdvBench copies, JailbreakBench behaviours, XSTest, Alpaca samples and their
own lists in whatever shape they have; this module turns any of them into plain rows
``{id, prompt, target, category, source}`` through an explicit column mapping, and turns every
kind of bad input into a one-line `UserError` that names the file and what to fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.paths import data_dir

Record = dict[str, Any]
FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(:[\w.-]+)?$")
_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")


def imported_path(name: str) -> Path:
    """Where `data import` keeps the set called `name`."""
    return data_dir() / "user" / f"{name}.jsonl"


def read_records(path: str | Path) -> tuple[list[Record], str, str]:
    """Rows of a local file, an imported set (by name) or a hub dataset, its short name, and
    the provenance label for rows without a ``source`` column (``user:<stem>``, ``hub:<id>``)."""
    text = str(path)
    p = Path(text).expanduser()
    if p.is_file():
        return read_table(p), p.stem, f"user:{p.stem}"
    if p.exists():
        raise UserError(f"{p} is not a file")
    if _NAME.match(text) and imported_path(text).is_file():
        return read_table(imported_path(text)), text, f"user:{text}"
    if _HUB_ID.match(text):
        return read_hub(text), text.split(":")[0], f"hub:{text}"
    raise UserError(f"no such prompt file: {text} (nor an imported set, nor a hub id owner/name)")


def read_table(p: Path) -> list[Record]:
    """Records of one local file, read by its suffix; empty or malformed -> `UserError`."""
    suffix = p.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"unsupported prompt file type {suffix or '(none)'}: use one of "
                        f"{', '.join(FORMATS)}")
    if p.stat().st_size == 0:
        raise UserError(f"{p} is empty")
    try:
        if suffix in (".csv", ".tsv", ".parquet"):
            records = _read_pandas(p, suffix)
        elif suffix == ".jsonl":
            records = _read_jsonl(p)
        else:
            records = _read_json(p)
    except UnicodeDecodeError:
        raise UserError(f"{p} is not UTF-8 text") from None
    if not records:
        raise UserError(f"{p} holds no rows")
    return records


def _read_pandas(p: Path, suffix: str) -> list[Record]:
    import pandas as pd

    try:
        if suffix == ".parquet":
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", dtype=str,
                             keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise UserError(f"{p} holds no rows") from None
    except (pd.errors.ParserError, ValueError, OSError) as e:
        raise UserError(f"{p} is not a valid {suffix[1:]} file: {_first_line(e)}") from None
    records: list[Record] = df.to_dict("records")
    return records


def _read_jsonl(p: Path) -> list[Record]:
    out: list[Record] = []
    with open(p, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{p} line {i} is not valid JSON: {e.msg}") from None
            if not isinstance(rec, dict):
                raise UserError(f"{p} line {i} is not a JSON object")
            out.append(rec)
    return out


def _read_json(p: Path) -> list[Record]:
    """A JSON list of objects, or an object holding exactly one such list (``{"data": [...]}``)."""
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{p} is not valid JSON: {e.msg} (line {e.lineno})") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        data = lists[0] if len(lists) == 1 else None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UserError(f"{p} must hold a list of objects (or one object with such a list)")
    return data


def read_hub(spec: str) -> list[Record]:
    """Rows of hub dataset ``owner/name[:split]`` (default split ``train``); needs the hub."""
    name, _, split = spec.partition(":")
    split = split or "train"
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
        rows = [dict(r) for r in ds]
    except Exception as e:  # noqa: BLE001 - the hub raises many kinds; all mean "can't"
        raise UserError(f"could not load hub dataset {name} (split {split}): {_first_line(e)}"
                        ) from None
    if not rows:
        raise UserError(f"hub dataset {name} (split {split}) holds no rows")
    return rows


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0][:200] if text else type(e).__name__)


def _value(v: Any) -> str | None:
    """A cell as stripped text; None / NaN / empty -> None."""
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    if type(v).__name__ in ("NAType", "NaTType"):  # pandas' missing markers, without pandas
        return None
    text = v if isinstance(v, str) else str(v)
    return text.strip() or None


def map_columns(records: list[Record], *, name: str, prompt_col: str = "prompt",
                id_col: str | None = None, target_col: str | None = None,
                category_col: str | None = None, source: str | None = None) -> list[Record]:
    """Rows ``{id, prompt, target, category, source}`` from records, by an explicit column mapping.

    Columns ``id``, ``target``, ``category`` and ``source`` are used when present and no other
    column was named. Missing ids are ``<name>-<sha256(prompt)[:10]>`` (``-2``, ``-3`` ... for
    repeated prompts), so the same file always gets the same ids.
    """
    cols = list(dict.fromkeys(k for r in records for k in r))

    def pick(given: str | None, default: str) -> str | None:
        if given is not None:
            if given not in cols:
                raise UserError(f"{name} has no column {given!r}; its columns: "
                                f"{', '.join(map(str, cols))}")
            return given
        return default if default in cols else None

    pcol = pick(prompt_col, prompt_col) or prompt_col  # pick() raises when it is missing
    icol, tcol = pick(id_col, "id"), pick(target_col, "target")
    ccol = pick(category_col, "category")
    scol = "source" if "source" in cols else None
    prefix = re.sub(r"[^A-Za-z0-9.-]+", "-", name).strip("-") or "user"
    out: list[Record] = []
    seen: set[str] = set()
    for i, r in enumerate(records, start=1):
        prompt = _value(r.get(pcol))
        if prompt is None:
            raise UserError(f"{name} row {i} has an empty {pcol!r}")
        rid = _value(r.get(icol)) if icol else None
        if icol and rid is None:
            raise UserError(f"{name} row {i} has an empty {icol!r}")
        if rid is None:
            rid = _unique(f"{prefix}-{hashlib.sha256(prompt.encode()).hexdigest()[:10]}", seen)
        elif rid in seen:
            raise UserError(f"{name} repeats id {rid!r} (row {i}): ids must be unique")
        seen.add(rid)
        out.append({"id": rid, "prompt": prompt,
                    "target": _value(r.get(tcol)) if tcol else None,
                    "category": _value(r.get(ccol)) if ccol else None,
                    "source": (_value(r.get(scol)) if scol else None) or source or f"user:{name}"})
    return out


def _unique(rid: str, seen: set[str]) -> str:
    k, out = 2, rid
    while out in seen:
        out, k = f"{rid}-{k}", k + 1
    return out
