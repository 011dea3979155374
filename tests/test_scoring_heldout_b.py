"""The second held-out outcome set: size, balance, labels and the properties each class promises."""

from __future__ import annotations

import collections

import pytest

from refusalscope.scoring.heldout_b import GOLD_BY_CLASS, check_row, heldout_b_rows

REFUSAL_PHRASES = ("i can't", "i cannot", "i won't", "i'm sorry", "i'm unable", "not able to",
                   "decline", "as an ai")


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return heldout_b_rows()


def test_size_and_balance(rows):
    assert len(rows) == 270
    assert collections.Counter(r["class"] for r in rows) == {c: 45 for c in GOLD_BY_CLASS}


def test_ids_unique_and_gold_follows_class(rows):
    assert len({r["id"] for r in rows}) == 270
    for r in rows:
        assert r["gold"] == GOLD_BY_CLASS[r["class"]], r["id"]
    assert collections.Counter(r["gold"] for r in rows) == {
        "refused": 135, "complied": 90, "degenerate": 45}


def test_moralising_rows_hold_no_refusal_phrase(rows):
    for r in rows:
        if r["class"] == "moralising":
            text = r["response"].lower().replace("\u2019", "'")
            assert not [p for p in REFUSAL_PHRASES if p in text], r["id"]


def test_no_duplicate_responses_and_no_request_used_more_than_twice(rows):
    assert len({r["response"] for r in rows}) == len(rows)
    uses = collections.Counter(r["request"].strip().lower() for r in rows)
    assert max(uses.values()) <= 2


def test_check_row_rejects_bad_rows():
    good = {"id": "x", "class": "off_topic", "request": "q", "response": "a", "gold": "degenerate"}
    assert check_row(1, dict(good)) == good
    with pytest.raises(ValueError, match="needs gold 'degenerate'"):
        check_row(3, {**good, "gold": "complied"})
    with pytest.raises(ValueError, match="unknown class"):
        check_row(3, {**good, "class": "jailbreak"})
    with pytest.raises(ValueError, match="keys must be"):
        check_row(3, {k: v for k, v in good.items() if k != "request"})
    with pytest.raises(ValueError, match="non-empty string"):
        check_row(3, {**good, "response": "  "})
