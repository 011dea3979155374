"""The blind hand-written labelled sets D, E and F keep their promised shape and split.

Each set was written by a helper who never opened the scorer's code, resources or other sets
(`benchmarks/data/README.md`), as 10 classes x 30 rows with one gold outcome per class. Two
thirds of each (20 rows per class, picked by a hash of the id) train the outcome classifier
(`refusalscope/scoring/resources/handwritten_outcomes_{d,e}.jsonl`), less every row that shares
an 8-word run or its whole text with a held-out row (set C or PyRIT's held-out rows), which
stays with the development third in `benchmarks/data/dev_outcomes_{d,e}.jsonl`. Set F is a
development set only (all 300 rows; a classifier trained on two thirds of it was not adopted,
see `benchmarks/data/README.md`). A tuned scorer is
only as good as these labels, so this checks the layout the README promises: counts and gold per
class, ids, distinct requests, empty responses only where emptiness is the point, short notes,
and two parts that share no row or request.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFUSED, COMPLIED, DEGENERATE = "refused", "complied", "degenerate"


@dataclass(frozen=True)
class HandSet:
    letter: str
    gold: dict[str, str]  # class -> gold outcome
    empty_ok: str  # the one class whose responses may be empty
    min_requests: int
    dev_rows: int
    train_rows: int

    def read(self, part: str) -> list[dict[str, str]]:
        path = (ROOT / "benchmarks" / "data" / f"dev_outcomes_{self.letter}.jsonl"
                if part == "dev" else
                ROOT / "refusalscope" / "scoring" / "resources"
                / f"handwritten_outcomes_{self.letter}.jsonl")
        if part == "train" and self.train_rows == 0:  # a development set only (F)
            assert not path.exists(), path
            return []
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
        # set D's development file names the request `prompt`; the training files `request`
        return [{"request" if k == "prompt" else k: v for k, v in r.items()} for r in rows]


SETS = {
    "d": HandSet("d", {"plain_refusal": REFUSED, "refusal_then_topic": REFUSED,
                       "moralising": REFUSED, "partial_refusal": REFUSED,
                       "off_topic": DEGENERATE, "error_or_echo": DEGENERATE,
                       "compliance": COMPLIED, "persona_compliance": COMPLIED,
                       "sympathetic_compliance": COMPLIED, "disclaimer_compliance": COMPLIED},
                 "error_or_echo", 200, 116, 184),
    "e": HandSet("e", {"fiction_compliance": COMPLIED, "terse_technical": COMPLIED,
                       "persuasive_or_misinfo": COMPLIED, "structured_compliance": COMPLIED,
                       "ordinary_compliance_benign": COMPLIED, "refusal_then_resources": REFUSED,
                       "empathetic_no_verb": REFUSED, "deflect_to_safe_version": REFUSED,
                       "meta_refusal": REFUSED, "nonanswer": DEGENERATE},
                 "nonanswer", 280, 109, 191),
    "f": HandSet("f", {"placeholder_compliance": COMPLIED, "terse_answer": COMPLIED,
                       "preamble_compliance": COMPLIED, "code_compliance": COMPLIED,
                       "benign_edgy": COMPLIED, "roleplay_or_creative": COMPLIED,
                       "plain_refusal": REFUSED, "moralising_no_verb": REFUSED,
                       "partial_refusal": REFUSED, "off_topic_or_nonanswer": DEGENERATE},
                 "off_topic_or_nonanswer", 300, 300, 0),
}


@pytest.fixture(params=sorted(SETS), scope="module")
def hand(request: pytest.FixtureRequest) -> tuple[HandSet, list[dict[str, str]]]:
    s = SETS[request.param]
    return s, s.read("dev") + s.read("train")


def test_fields_and_thirty_rows_per_class_with_its_gold(hand) -> None:
    s, rows = hand
    for r in rows:
        assert set(r) == {"id", "class", "request", "response", "gold", "note"}, r.get("id")
        assert all(isinstance(v, str) for v in r.values()), r["id"]
    assert Counter(r["class"] for r in rows) == {c: 30 for c in s.gold}
    assert [r["id"] for r in rows if r["gold"] != s.gold[r["class"]]] == []


def test_ids_requests_empty_responses_and_notes(hand) -> None:
    s, rows = hand
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert re.fullmatch(rf"{s.letter}-{r['class']}-\d{{2}}", r["id"]), r["id"]
    requests = {r["request"].strip().lower() for r in rows}
    assert "" not in requests and len(requests) >= s.min_requests
    empty = [r["id"] for r in rows if not r["response"].strip()]
    assert all(i.startswith(f"{s.letter}-{s.empty_ok}-") for i in empty), empty
    assert [r["id"] for r in rows if not 0 < len(r["note"].split()) <= 12] == []


def test_split_dev_and_train_share_no_row_or_request(hand) -> None:
    s, _ = hand
    dev, train = s.read("dev"), s.read("train")
    assert (len(dev), len(train)) == (s.dev_rows, s.train_rows)
    assert all(n >= 10 for n in Counter(r["class"] for r in dev).values())
    assert len({r["id"] for r in dev}) == s.dev_rows
    assert all(n <= 20 for n in Counter(r["class"] for r in train).values())
    assert not {r["request"] for r in dev} & {r["request"] for r in train}
    assert not {r["id"] for r in dev} & {r["id"] for r in train}


@pytest.mark.parametrize("letter,counts", [
    ("g", {COMPLIED: 107, REFUSED: 62, DEGENERATE: 47}),
    ("h", {COMPLIED: 56, REFUSED: 64, DEGENERATE: 29}),
])
def test_real_outcome_labels_carry_no_text_and_one_label_each(letter: str,
                                                             counts: dict[str, int]) -> None:
    """Sets G and H label real model responses by hash: no request or response text is
    committed (harmful generations stay under artifacts/), one gold per distinct response."""
    path = ROOT / "benchmarks" / "data" / f"real_outcomes_{letter}.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for r in rows:
        assert set(r) == {"gid", "prompt_id", "response_sha256", "models", "n_runs", "gold",
                          "note"}, r["gid"]
        assert re.fullmatch(rf"{letter}-\d{{3}}", r["gid"]), r["gid"]
        assert re.fullmatch(r"[0-9a-f]{64}", r["response_sha256"]) and r["n_runs"] >= 1
        assert r["gold"] in (REFUSED, COMPLIED, DEGENERATE) and len(r["note"].split()) <= 10
    assert len({r["gid"] for r in rows}) == len({(r["prompt_id"], r["response_sha256"])
                                                  for r in rows}) == len(rows)
    assert Counter(r["gold"] for r in rows) == counts
