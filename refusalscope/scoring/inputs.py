"""Reading what gets scored: a run's `generations.jsonl`, or any CSV/TSV/JSONL table.

Everything is validated up front and every problem is one `UserError` line naming the file,
the row and what to do, so a bad input stops the command before anything is written. Error
messages never quote a response (it may be a harmful completion).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import read_jsonl

LABELS = ("harmful", "harmless")
_CSV_DIALECTS = {".csv": ",", ".tsv": "\t"}
_JSONL = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Item:
    """One prompt/response pair to score. `label` is the prompt's class: harmful or harmless."""

    id: str
    label: str
    prompt: str
    response: str


def read_table(path: Path) -> list[dict[str, Any]]:
    """Rows of a `.csv`, `.tsv`, `.jsonl` or `.ndjson` file as dicts. Empty file → UserError.

    CSV files may start with `# ...` comment lines (as PyRIT's scorer-eval files do); they are
    skipped. A JSONL file's torn last line (an interrupted append) is ignored, like everywhere
    else in refusalscope.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in _JSONL:
        rows = _read_jsonl(path)
    elif suffix in _CSV_DIALECTS:
        rows = _read_csv(path, _CSV_DIALECTS[suffix])
    else:
        raise UserError(f"unsupported input type {suffix or '(none)'!r} for {path}; "
                        "use .csv, .tsv, .jsonl or .ndjson")
    if not rows:
        raise UserError(f"no rows in {path}: nothing to score")
    return rows


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        rows = read_jsonl(path)  # a malformed line is already a one-line UserError there
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise UserError(f"row {i} of {path} is not a JSON object")
    return rows


def _read_csv(path: Path, delimiter: str) -> list[dict[str, Any]]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            lines = [ln for ln in f]
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    try:
        reader = csv.DictReader(lines, delimiter=delimiter, strict=True)
        rows = list(reader)
    except csv.Error as e:
        raise UserError(f"malformed CSV in {path}: {e}") from None
    for i, row in enumerate(rows, 2):
        if None in row:  # more cells than header columns
            raise UserError(f"row on line {i} of {path} has more cells than the header")
    return rows


def items_from_rows(rows: list[dict[str, Any]], source: Path, *, prompt_col: str = "prompt",
                    response_col: str = "response", label_col: str | None = "label",
                    default_label: str | None = None, id_col: str = "id") -> list[Item]:
    """Validate rows and turn them into `Item`s.

    `label_col` may be missing from the rows only if `default_label` is given. A missing `id`
    becomes the 0-based row number. A null/missing response is scored as empty.
    """
    columns = set().union(*(r.keys() for r in rows))
    needed = [c for c in (prompt_col, response_col) if c not in columns]
    use_label = label_col is not None and label_col in columns
    if label_col is not None and not use_label and default_label is None:
        needed.append(label_col)
    if needed:
        raise UserError(f"{source} has no column {needed[0]!r}; columns are: "
                        f"{', '.join(sorted(map(str, columns)))}")
    items = []
    for i, row in enumerate(rows):
        label = _label(row.get(label_col) if use_label and label_col else default_label, i, source)
        prompt, response = row.get(prompt_col), row.get(response_col)
        if not isinstance(prompt, str) or not isinstance(response, (str, type(None))):
            raise UserError(f"row {i} of {source}: {prompt_col!r} and {response_col!r} "
                            "must be text")
        row_id = row.get(id_col)
        items.append(Item(id=str(row_id) if row_id not in (None, "") else str(i), label=label,
                          prompt=prompt, response=response or ""))
    return items


def _label(value: Any, i: int, source: Path) -> str:
    label = str(value).strip().lower() if value is not None else ""
    if label not in LABELS:
        raise UserError(f"row {i} of {source}: label {str(value)[:20]!r} is not one of "
                        f"{', '.join(LABELS)}")
    return label
