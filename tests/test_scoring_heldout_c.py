"""Held-out set C (`scoring/resources/heldout_outcomes_c.jsonl`): shape and independence.

Set C is the final test set on which the scorer's per-class accuracy is reported, written by hand
without reading the scorer, its training templates or sets A and B. These tests pin its shape
(8 classes x 36 rows, gold per class, unique ids and responses, at most 2 rows per request) and
check that no response shares an 8-word run with any text the scorer trains on (the hand-written
training files and the template pools), so a high score on C cannot come from memorised wording.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterable, Iterator
from importlib import resources

import pytest

RUN = 8  # words in a run that counts as copied text
GOLD = {
    "plain_refusal": "refused",
    "moralising": "refused",
    "partial_refusal": "refused",
    "off_topic": "degenerate",
    "error_text": "degenerate",
    "compliance": "complied",
    "partial_compliance": "complied",
    "sympathetic_compliance": "complied",
}
PER_CLASS = 36
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# A template slot such as {request} stands for unknown text: a run may not cross it.
_SLOT = re.compile(r"\{[^{}]*\}")


def _rows() -> list[dict[str, str]]:
    path = resources.files("refusalscope.scoring") / "resources" / "heldout_outcomes_c.jsonl"
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _runs(text: str) -> set[tuple[str, ...]]:
    """Every run of RUN consecutive lower-cased words in `text`, not crossing a template slot."""
    out: set[tuple[str, ...]] = set()
    for part in _SLOT.split(text.lower()):
        words = _WORD.findall(part)
        out.update(tuple(words[i : i + RUN]) for i in range(len(words) - RUN + 1))
    return out


def _strings(obj: object) -> Iterator[str]:
    """All strings nested anywhere in a JSON-like value (template pools are dicts of lists)."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(obj, Iterable):
        for item in obj:
            yield from _strings(item)


def _training_texts() -> list[str]:
    from refusalscope.scoring import train_data, train_templates

    texts = list(_strings(train_templates.templates()))
    for ex in train_data.handwritten_examples():
        texts += [ex.prompt, ex.response]
    return texts


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return _rows()


def test_rows_have_the_fields_and_ids_name_their_class(rows: list[dict[str, str]]) -> None:
    for row in rows:
        assert set(row) == {"id", "class", "request", "response", "gold"}, row.get("id")
        assert re.fullmatch(rf"c-{row['class']}-\d{{3}}", row["id"]), row["id"]
        assert row["request"].strip(), row["id"]


def test_each_class_has_36_rows_and_its_gold(rows: list[dict[str, str]]) -> None:
    counts = collections.Counter(row["class"] for row in rows)
    assert counts == {name: PER_CLASS for name in GOLD}
    wrong = [row["id"] for row in rows if row["gold"] != GOLD[row["class"]]]
    assert wrong == []


def test_ids_and_responses_are_unique(rows: list[dict[str, str]]) -> None:
    ids = collections.Counter(row["id"] for row in rows)
    responses = collections.Counter(row["response"] for row in rows)
    assert [k for k, n in ids.items() if n > 1] == []
    assert [k[:60] for k, n in responses.items() if n > 1] == []


def test_requests_are_varied(rows: list[dict[str, str]]) -> None:
    per_request = collections.Counter(row["request"] for row in rows)
    assert max(per_request.values()) <= 2
    assert len(per_request) >= 150


def test_no_response_copies_an_8_word_run_of_the_training_text(
    rows: list[dict[str, str]],
) -> None:
    seen: set[tuple[str, ...]] = set()
    for text in _training_texts():
        seen |= _runs(text)
    assert len(seen) > 1000  # the training sources were found and read
    copied: dict[str, str] = {}
    for row in rows:
        shared = _runs(row["response"]) & seen
        if shared:
            copied[row["id"]] = " ".join(min(shared))
    assert copied == {}
