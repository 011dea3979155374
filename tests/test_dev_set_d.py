"""The blind development set D (benchmarks/data/dev_outcomes_d.jsonl) keeps its promised shape.

Set D is hand-written, labelled (request, response) rows for tuning the refusal/compliance scorer
(issue 16). A scorer tuned on a set whose classes are short, mislabelled or duplicated would be tuned
on the wrong thing, so this checks the structure the README promises: 10 classes x 30 rows, one gold
outcome per class, unique ids of the form d-<class>-<nn>, at least 200 distinct requests, and no
empty response outside `error_or_echo` (where an empty answer is itself the thing being labelled).
It reads only the committed file, never a scorer.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEV_D = ROOT / "benchmarks" / "data" / "dev_outcomes_d.jsonl"
# set D's training part (from minilm-outcome-v7 on): 20 rows per class chosen by a hash of the id,
# less any row that shares an 8-word run or its whole text with held-out set C (stock error
# strings, AdvBench echoes, stock refusals, an AdvBench request: 16 rows), which stays here with the 10 development
# rows per class, so that set C is still unseen by training
TRAIN_D = ROOT / "refusalscope" / "scoring" / "resources" / "handwritten_outcomes_d.jsonl"

GOLD_BY_CLASS = {
    "plain_refusal": "refused",
    "refusal_then_topic": "refused",
    "moralising": "refused",
    "partial_refusal": "refused",
    "off_topic": "degenerate",
    "error_or_echo": "degenerate",
    "compliance": "complied",
    "persona_compliance": "complied",
    "sympathetic_compliance": "complied",
    "disclaimer_compliance": "complied",
}
ROWS_PER_CLASS = 30
KEYS = {"id", "class", "prompt", "response", "gold", "note"}


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    """All 300 rows of set D: the development part and the training part (whose `request`
    is the development file's `prompt`)."""
    train = [{"prompt" if k == "request" else k: v for k, v in r.items()} for r in _read(TRAIN_D)]
    return _read(DEV_D) + train


def test_split_dev_and_train_share_no_row_or_request() -> None:
    dev, train = _read(DEV_D), _read(TRAIN_D)
    assert len(dev) == 116 and len(train) == 184
    assert all(n >= 10 for n in Counter(r["class"] for r in dev).values())
    assert all(n <= 20 for n in Counter(r["class"] for r in train).values())
    assert not {r["prompt"] for r in dev} & {r["request"] for r in train}
    assert not {r["id"] for r in dev} & {r["id"] for r in train}


def test_every_row_has_exactly_the_documented_fields(rows: list[dict[str, str]]) -> None:
    for row in rows:
        assert set(row) == KEYS, row.get("id")
        assert all(isinstance(row[k], str) for k in KEYS), row["id"]


def test_thirty_rows_in_each_of_the_ten_classes(rows: list[dict[str, str]]) -> None:
    counts = Counter(row["class"] for row in rows)
    assert counts == {cls: ROWS_PER_CLASS for cls in GOLD_BY_CLASS}
    assert len(rows) == ROWS_PER_CLASS * len(GOLD_BY_CLASS)


def test_gold_follows_the_class(rows: list[dict[str, str]]) -> None:
    wrong = [row["id"] for row in rows if row["gold"] != GOLD_BY_CLASS[row["class"]]]
    assert wrong == []


def test_ids_are_unique_and_name_their_class(rows: list[dict[str, str]]) -> None:
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids)
    for row in rows:
        assert re.fullmatch(rf"d-{row['class']}-\d{{2}}", row["id"]), row["id"]


def test_at_least_200_distinct_requests(rows: list[dict[str, str]]) -> None:
    prompts = {row["prompt"].strip() for row in rows}
    assert "" not in prompts
    assert len(prompts) >= 200


def test_only_error_or_echo_may_have_an_empty_response(rows: list[dict[str, str]]) -> None:
    empty = [row["id"] for row in rows if not row["response"].strip()]
    assert all(rid.startswith("d-error_or_echo-") for rid in empty), empty


def test_notes_are_short(rows: list[dict[str, str]]) -> None:
    long_notes = [row["id"] for row in rows if not 0 < len(row["note"].split()) <= 12]
    assert long_notes == []
