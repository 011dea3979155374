"""Reading what gets scored: a run's `generations.jsonl`, or any CSV/TSV/JSONL table.

Everything is validated up front and every problem is one `UserError` line naming the file,
the row and what to do, so a bad input stops the command before anything is written. Error
messages never quote a response (it may be a harmful completion).
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import read_jsonl
from refusalscope.runs import Run

log = logging.getLogger(__name__)

GENERATIONS = "generations.jsonl"
LABELS = ("harmful", "harmless")
# Ground-truth refusal values accepted in a `--gold-col` column (refused = True).
GOLD_TRUE = frozenset({"refused", "refusal", "1", "true", "yes"})
GOLD_FALSE = frozenset({"complied", "compliance", "0", "false", "no"})
# A gold column may also hold the three outcomes (issue 16); "degenerate" = neither refused nor
# complied (empty, looping, off-topic, error text). Binary gold maps to refused / complied.
GOLD_OUTCOMES = ("refused", "complied", "degenerate")
_CSV_DIALECTS = {".csv": ",", ".tsv": "\t"}
_JSONL = (".jsonl", ".ndjson")


@dataclass(frozen=True)
class Item:
    """One prompt/response pair to score. `label` is the prompt's class: harmful or harmless."""

    id: str
    label: str
    prompt: str
    response: str
    gold: bool | None = None  # ground-truth refusal (True = refused), when the input has one
    gold_outcome: str | None = None  # the gold as an outcome in GOLD_OUTCOMES, when it has one


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
                    default_label: str | None = None, id_col: str = "id",
                    gold_col: str | None = None) -> list[Item]:
    """Validate rows and turn them into `Item`s.

    `label_col` may be missing from the rows only if `default_label` is given. A missing `id`
    becomes the 0-based row number. A null/missing response is scored as empty. `gold_col`
    names a ground-truth refusal column (see `parse_gold`); it must exist when given.
    """
    columns = set().union(*(r.keys() for r in rows))
    needed = [c for c in (prompt_col, response_col, gold_col) if c and c not in columns]
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
        gold = parse_gold_outcome(row.get(gold_col), i, source) if gold_col else None
        items.append(Item(id=str(row_id) if row_id not in (None, "") else str(i), label=label,
                          prompt=prompt, response=response or "",
                          gold=None if gold is None else gold == "refused", gold_outcome=gold))
    return items


def parse_gold(value: Any, i: int, source: Path | str) -> bool:
    """A ground-truth refusal value as a bool: refused/1/true/yes → True, complied/0/false/no →
    False (case-insensitive; JSON booleans and 0/1 numbers too). Anything else is a UserError
    naming the row, so non-binary labels never slip into accuracy numbers."""
    text = str(value).strip().lower() if value is not None else ""
    if isinstance(value, float) and value in (0.0, 1.0):
        text = str(int(value))
    if text in GOLD_TRUE:
        return True
    if text in GOLD_FALSE:
        return False
    raise UserError(f"row {i} of {source}: gold label {text[:20]!r} is not one of "
                    "refused/complied/degenerate, 1/0, true/false or yes/no")


def parse_gold_outcome(value: Any, i: int, source: Path | str) -> str:
    """A gold value as an outcome: `degenerate` as such, anything `parse_gold` reads as
    refused / complied."""
    if isinstance(value, str) and value.strip().lower() == "degenerate":
        return "degenerate"
    return "refused" if parse_gold(value, i, source) else "complied"


def _label(value: Any, i: int, source: Path) -> str:
    label = str(value).strip().lower() if value is not None else ""
    if label not in LABELS:
        raise UserError(f"row {i} of {source}: label {str(value)[:20]!r} is not one of "
                        f"{', '.join(LABELS)}")
    return label


@dataclass
class LoadedRun:
    """A run validated for scoring, before anything is written."""

    run: Run
    items: list[Item]
    source: Path
    partial: bool


def load_run(run_path: str | Path, *, allow_partial: bool = False) -> LoadedRun:
    """Open a run and read its generations; every problem is a one-line `UserError`."""
    run = Run.open(run_path)
    source = run.file(GENERATIONS)
    if not source.is_file():
        raise UserError(f"run {run.id} has no {GENERATIONS}: only generate runs can be scored")
    status = run.manifest.status
    if status != "success" and not allow_partial:
        raise UserError(f"run {run.id} has status {status!r}, not 'success'; "
                        "pass --allow-partial to score the rows it has")
    harmless = bool(run.manifest.config.get("harmless", False))
    items = items_from_rows(read_table(source), source,
                            default_label="harmless" if harmless else "harmful")
    if status != "success":
        log.warning("run %s has status %r: scoring %d rows of a partial run", run.id, status,
                    len(items))
    return LoadedRun(run, items, source, partial=status != "success")


def latest_by_scorer(run_path: Path) -> tuple[dict[str, dict[str, dict[str, Any]]], str | None]:
    """{scorer name: {prompt id: score row}} from each scorer's latest `scores[.K].jsonl`,
    and the name of the run's latest scoring (its main scorer; None if never scored)."""
    pat = re.compile(r"scores(?:\.(\d+))?\.jsonl")
    files = sorted((int(m.group(1) or 1), p) for p in Path(run_path).glob("scores*.jsonl")
                   if (m := pat.fullmatch(p.name)))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    main = None
    for _, path in files:
        rows = read_jsonl(path)
        if rows:
            name = str(rows[0].get("scorer") or path.stem)
            out[name] = {str(r["id"]): r for r in rows}
            main = name
    return out, main
