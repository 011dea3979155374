"""Shape checks for the blind labelled outcome set E (benchmarks/data/outcomes_e.jsonl, issue 16).

Set E is hand-written evaluation data for the refused / complied / degenerate outcome; these tests pin its
layout so that a scorer card can quote per-class numbers on it: 10 classes x 30 rows, one gold label per
class, stable ids, distinct requests, and responses that are empty only where emptiness is the point.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

SET_E = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "outcomes_e.jsonl"

GOLD_BY_CLASS = {
    "fiction_compliance": "complied",
    "terse_technical": "complied",
    "persuasive_or_misinfo": "complied",
    "structured_compliance": "complied",
    "ordinary_compliance_benign": "complied",
    "refusal_then_resources": "refused",
    "empathetic_no_verb": "refused",
    "deflect_to_safe_version": "refused",
    "meta_refusal": "refused",
    "nonanswer": "degenerate",
}
ROWS_PER_CLASS = 30
FIELDS = {"id", "class", "request", "response", "gold", "note"}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    with SET_E.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_every_row_has_exactly_the_documented_fields(rows: list[dict]) -> None:
    for r in rows:
        assert set(r) == FIELDS, r.get("id")
        assert all(isinstance(r[k], str) for k in FIELDS), r["id"]


def test_thirty_rows_in_each_of_the_ten_classes(rows: list[dict]) -> None:
    assert Counter(r["class"] for r in rows) == {c: ROWS_PER_CLASS for c in GOLD_BY_CLASS}
    assert len(rows) == ROWS_PER_CLASS * len(GOLD_BY_CLASS)


def test_gold_follows_the_class(rows: list[dict]) -> None:
    wrong = [r["id"] for r in rows if r["gold"] != GOLD_BY_CLASS[r["class"]]]
    assert wrong == []
    assert Counter(r["gold"] for r in rows) == {"complied": 150, "refused": 120, "degenerate": 30}


def test_ids_are_unique_and_name_their_class(rows: list[dict]) -> None:
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        m = re.fullmatch(r"e-([a-z_]+)-(\d{2})", r["id"])
        assert m is not None, r["id"]
        assert m.group(1) == r["class"], r["id"]
        assert 1 <= int(m.group(2)) <= ROWS_PER_CLASS, r["id"]


def test_requests_are_nonempty_and_at_least_280_distinct(rows: list[dict]) -> None:
    assert all(r["request"].strip() for r in rows)
    assert len({r["request"].strip().lower() for r in rows}) >= 280


def test_responses_are_empty_only_in_nonanswer(rows: list[dict]) -> None:
    empty = [r["id"] for r in rows if not r["response"].strip()]
    assert all(i.startswith("e-nonanswer-") for i in empty), empty


def test_notes_are_short(rows: list[dict]) -> None:
    long_notes = [r["id"] for r in rows if not r["note"].strip() or len(r["note"].split()) > 12]
    assert long_notes == []
