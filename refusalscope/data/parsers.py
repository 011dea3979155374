"""Turn each benchmark's own file format into plain rows, keeping only harmful requests.

A parser takes ``{member path: bytes}`` (already hash-checked) and returns the rows it keeps,
each ``{"prompt", "target", "orig_id", "category"}``, plus how many rows it left out and why.
The selection rules, and the reasons for them, are written down in `refusalscope.data.sources`.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from refusalscope.errors import UserError

Row = dict[str, Any]


@dataclass
class Parsed:
    """Rows kept from one source, and counts of rows left out keyed by reason."""

    rows: list[Row] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)

    def add(self, prompt: str, orig_id: str, category: str | None,
            target: str | None = None) -> None:
        text = prompt.strip()
        if not text:
            self.excluded["empty prompt"] += 1
            return
        self.rows.append({"prompt": text, "target": (target or "").strip() or None,
                          "orig_id": orig_id, "category": category or None})


def _text(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None


def _csv(path: str, data: bytes, needed: tuple[str, ...]) -> list[dict[str, str]]:
    """Read a CSV into dicts; missing columns are a `UserError` naming the columns there are."""
    try:
        reader = csv.DictReader(io.StringIO(_text(path, data)), skipinitialspace=True)
        rows = list(reader)
    except csv.Error as e:
        raise UserError(f"{path} is not valid CSV: {e}") from None
    have = reader.fieldnames or []
    missing = [c for c in needed if c not in have]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; it has {', '.join(have)}")
    return rows


def advbench(files: dict[str, bytes]) -> Parsed:
    out = Parsed()
    for path, data in files.items():
        rows = _csv(path, data, ("goal", "target"))
        if rows and rows[0]["goal"].strip() == "Please compute 2*2":
            out.excluded["non-AdvBench sentinel row"] += 1
            rows = rows[1:]
        # AdvBench has no ids of its own: the 0-based row index in the upstream CSV.
        for i, r in enumerate(rows):
            out.add(r["goal"], f"row{i}", None, r["target"])
    return out


def harmbench(files: dict[str, bytes]) -> Parsed:
    out = Parsed()
    cols = ("Behavior", "FunctionalCategory", "SemanticCategory", "BehaviorID")
    for path, data in files.items():
        for r in _csv(path, data, cols):
            kind = r["FunctionalCategory"].strip()
            if kind != "standard":
                out.excluded[f"{kind} behaviour"] += 1
                continue
            out.add(r["Behavior"], r["BehaviorID"].strip(), r["SemanticCategory"].strip())
    return out


def strongreject(files: dict[str, bytes]) -> Parsed:
    out = Parsed()
    for path, data in files.items():
        for i, r in enumerate(_csv(path, data, ("category", "source", "forbidden_prompt"))):
            # The upstream `source` column (AdvBench, DAN, custom, ...) goes into the id so that
            # provenance of the 25 AdvBench repeats stays visible.
            out.add(r["forbidden_prompt"], f"row{i}:{r['source'].strip()}", r["category"].strip())
    return out


# Do-Not-Answer risk areas whose questions are harmful requests (file stems), and intent-tag
# prefixes that mark a harmful request inside the other areas. See `sources` for the reasons.
DNA_HARMFUL_AREAS = ("malicious_uses", "discrimination_exclusion_toxicity_hateful_offensive")
DNA_HARMFUL_INTENTS = ("S003", "S004", "S005", "S006", "S007", "S008", "S009personal")


def donotanswer(files: dict[str, bytes]) -> Parsed:
    out = Parsed()
    for path, data in files.items():
        area = PurePosixPath(path).stem
        for n, line in enumerate(_text(path, data).splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                prompt, intents = rec["prompt"], list(rec.get("intents") or [])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError(f"{path} line {n} is not a Do-Not-Answer record") from None
            if area in DNA_HARMFUL_AREAS or any(i.startswith(DNA_HARMFUL_INTENTS) for i in intents):
                category = f"{area}:{','.join(intents)}" if intents else area
                out.add(prompt, f"{area}:{n}", category)
            else:
                out.excluded[f"not a harmful request ({area})"] += 1
    return out


AIRT_EXCLUDED_FILES = ("fairness_yes_no", "airt_licensed_therapist", "leakage")


def airt(files: dict[str, bytes]) -> Parsed:
    import yaml

    out = Parsed()
    for path, data in files.items():
        stem = PurePosixPath(path).stem
        try:
            doc = yaml.safe_load(_text(path, data))
            seeds = list(doc["seeds"])
        except (yaml.YAMLError, KeyError, TypeError):
            raise UserError(f"{path} is not a PyRIT seed file") from None
        for i, seed in enumerate(seeds):
            if stem in AIRT_EXCLUDED_FILES:
                out.excluded[f"not a harmful request ({stem})"] += 1
                continue
            if seed.get("seed_type", doc.get("seed_type")) != "objective":
                out.excluded["multi-turn conversation turn"] += 1
                continue
            cats = seed.get("harm_categories") or doc.get("harm_categories")
            cat = ",".join(cats) if isinstance(cats, list) else cats
            out.add(str(seed["value"]), f"{doc.get('dataset_name', stem)}:{i}", cat)
    return out


PARSERS: dict[str, Callable[[dict[str, bytes]], Parsed]] = {
    "advbench": advbench, "harmbench": harmbench, "strongreject": strongreject,
    "donotanswer": donotanswer, "airt": airt,
}
