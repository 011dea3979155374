"""Labelled examples: PyRIT label derivation, user files with gold labels, group splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from refusalscope.errors import UserError
from refusalscope.scoring.inputs import parse_gold
from refusalscope.scoring.labelled import (
    Example,
    _pyrit_verdict,
    file_examples,
    pyrit_examples,
    split_groups,
)


def test_pyrit_rule_needs_human_and_text_to_agree_on_refused() -> None:
    assert _pyrit_verdict({"human_score": "1"}, "objective", True) is False
    assert _pyrit_verdict({"human_score": "0"}, "objective", True) is True
    assert isinstance(_pyrit_verdict({"human_score": "0"}, "objective", False), str)
    assert _pyrit_verdict({"human_score_1": "0.5", "human_score_2": "1"}, "harm", False) is False
    assert _pyrit_verdict({"human_score_1": "0", "human_score_2": "0"}, "harm", True) is True
    # raters split across 0.5, or a 0.25: ambiguous
    assert isinstance(_pyrit_verdict({"human_score_1": "0", "human_score_2": "0.5"}, "harm",
                                     True), str)
    assert isinstance(_pyrit_verdict({"human_score_1": "0.25"}, "harm", True), str)
    assert isinstance(_pyrit_verdict({"human_score": ""}, "harm", True), str)


def test_pyrit_examples_counts_are_pinned() -> None:
    examples, counts = pyrit_examples()
    assert counts["refused"] == 172 and counts["complied"] == 597
    assert counts["refused"] + counts["complied"] == len(examples)
    assert sum(counts["excluded"].values()) + len(examples) + counts["conflicting_duplicates"] \
        <= counts["rows"]
    assert len({(e.prompt, e.response) for e in examples}) == len(examples)


def _ex(n: int) -> list[Example]:
    return [Example(f"p{i % (n // 2)}", f"r{i}", i % 2 == 0, "t", f"g{i % (n // 2)}")
            for i in range(n)]


def test_split_keeps_prompt_groups_on_one_side_and_is_seeded() -> None:
    ex = _ex(400)
    a, b = split_groups(ex, seed=3), split_groups(ex, seed=3)
    assert a == b
    sides = {side: {e.group for e in rows} for side, rows in a.items()}
    assert not sides["train"] & sides["heldout"] and not sides["calib"] & sides["heldout"]
    assert not sides["train"] & sides["calib"]
    assert sum(len(v) for v in a.values()) == 400
    assert 0.1 < len(a["heldout"]) / 400 < 0.3
    assert split_groups(ex, seed=4) != a


def test_split_of_too_little_data_is_a_user_error() -> None:
    with pytest.raises(UserError, match="split is empty"):
        split_groups(_ex(2))


@pytest.mark.parametrize("value,want", [("refused", True), ("Complied", False), (1, True),
                                        (0, False), (True, True), ("no", False), (1.0, True)])
def test_parse_gold_accepts_binary_values(value: object, want: bool) -> None:
    assert parse_gold(value, 0, "f") is want


@pytest.mark.parametrize("value", ["maybe", None, 0.5, ""])
def test_parse_gold_rejects_the_rest_naming_the_row(value: object) -> None:
    with pytest.raises(UserError, match="row 7 of f"):
        parse_gold(value, 7, "f")


def test_file_examples_reads_gold(tmp_path: Path) -> None:
    f = tmp_path / "l.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "a", "response": "no", "refused": "refused"},
        {"prompt": "b", "response": "yes", "refused": 0}]) + "\n")
    ex = file_examples(f)
    assert [e.refused for e in ex] == [True, False]
    assert ex[0].source == "file:l.jsonl"
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,response\na,b\n")
    with pytest.raises(UserError, match="no column 'refused'"):
        file_examples(bad)
