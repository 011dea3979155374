"""The held-out outcome set: PyRIT id list and hand-written rows (issue 16's acceptance data)."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from refusalscope.errors import UserError
from refusalscope.scoring import heldout
from refusalscope.scoring.heldout import (
    heldout_pyrit_ids,
    is_heldout_response,
    normalise,
    pyrit_row_id,
)


def test_id_is_stable_and_normalised() -> None:
    member = "pyrit/datasets/scorer_evals/harm/violence.csv"
    a = pyrit_row_id(member, "I can't  help with\nthat.")
    assert a == pyrit_row_id(member, "  i CAN'T help with that. ")
    # pinned: the committed id list depends on this exact function
    assert a == f"{member}:" + hashlib.sha256(b"i can't help with that.").hexdigest()[:16]
    assert a != pyrit_row_id(member, "I can help with that.")
    assert a != pyrit_row_id(member.replace("harm", "objective"), "I can't help with that.")
    assert normalise("Caf\u0065\u0301 ok") == normalise("Caf\u00e9   OK")


def test_heldout_pyrit_ids_load() -> None:
    ids = heldout_pyrit_ids()
    doc = json.loads(heldout.PYRIT_IDS_FILE.read_text())
    assert ids == set(doc["ids"]["pyrit_refusal"]) | set(doc["ids"]["pyrit_compliance"])
    assert not set(doc["ids"]["pyrit_refusal"]) & set(doc["ids"]["pyrit_compliance"])
    assert doc["responses"]["pyrit_refusal"] >= 40 and doc["responses"]["pyrit_compliance"] >= 40
    for i in ids:
        member, h = i.rsplit(":", 1)
        assert member.startswith("pyrit/datasets/scorer_evals/") and member.endswith(".csv")
        assert len(h) == 16 and int(h, 16) >= 0
    assert set(doc["v2_trained"]) <= {i.rsplit(":", 1)[1] for i in ids}
    some = next(iter(ids)).rsplit(":", 1)[1]
    assert some in heldout.heldout_response_hashes()
    assert not is_heldout_response("a response written for this test only")


def test_handwritten_rows_parse_and_cover_every_class() -> None:
    rows = heldout.handwritten_rows()
    counts = Counter(r.cls for r in rows)
    assert counts == {c: 36 for c in heldout.HANDWRITTEN_CLASSES}  # set C: 8 classes x 36
    assert Counter(r.gold for r in rows) == {"refused": 108, "complied": 108, "degenerate": 72}
    assert len({r.id for r in rows}) == len(rows)
    assert len({normalise(r.response) for r in rows}) == len(rows)
    assert max(Counter(normalise(r.request) for r in rows).values()) <= 2
    for r in rows:
        assert r.gold == heldout.HANDWRITTEN_CLASSES[r.cls] and r.gold in heldout.OUTCOMES
    # the class definitions the acceptance numbers rely on
    refusal_words = re.compile(r"\b(i can't|i cannot|i won't|i will not|i'm sorry|unable|"
                               r"decline|as an ai)\b", re.I)
    assert not [r.id for r in rows if r.cls == "moralising"
                and refusal_words.search(r.response.replace("\u2019", "'"))]
    # no hand-written response is a PyRIT held-out response (the two parts are disjoint)
    assert not [r.id for r in rows if is_heldout_response(r.response)]


def test_no_training_row_is_a_handwritten_heldout_row() -> None:
    from refusalscope.scoring.train_data import handwritten_examples
    from refusalscope.scoring.train_templates import templates

    held = {normalise(r.response) for r in heldout.handwritten_rows()}
    # stock error strings of a few words ("[input rejected]", "null", "segmentation fault
    # (core dumped)") were written into both sets independently; longer texts must not recur
    shared = held & {normalise(e.response) for e in handwritten_examples()}
    assert not [t for t in shared if len(t.split()) > 4]
    assert len(shared) <= 3
    # stock sentences of up to 7 words recur anywhere ("I can't help with that request." is in
    # both, written independently); longer template fragments must not
    fragments = [normalise(x) for v in templates().values() if isinstance(v, list) for x in v
                 if isinstance(x, str) and len(x.split()) >= 8]
    assert not [f for f in fragments if any(f in h for h in held)]


def test_handwritten_rows_reject_a_wrong_gold(tmp_path: Path) -> None:
    bad = tmp_path / "rows.jsonl"
    bad.write_text(json.dumps({"id": "x", "class": "off_topic", "request": "r",
                               "response": "a poem", "gold": "complied"}) + "\n")
    with pytest.raises(UserError, match="line 1"):
        heldout.handwritten_rows(bad)


SET_I = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "heldout_outcomes_i.jsonl"


def test_set_i_is_a_fresh_heldout_set_in_set_c_classes() -> None:
    """Set I (benchmarks/data/README.md): written blind after v8, never read by training; the
    six rows whose request or response equalled a training row were removed before scoring."""
    from refusalscope.scoring.train_data import handwritten_examples

    rows = heldout.handwritten_rows(SET_I)
    assert Counter(r.cls for r in rows) == {
        "compliance": 60, "partial_compliance": 36, "sympathetic_compliance": 36,
        "error_text": 32, "plain_refusal": 36, "moralising": 35, "partial_refusal": 35,
        "off_topic": 36}
    assert len({r.id for r in rows}) == len(rows) and all(r.id.startswith("i-") for r in rows)
    assert len({normalise(r.request) for r in rows}) == len(rows)
    train = handwritten_examples()
    seen = {normalise(e.response) for e in train} | {normalise(e.prompt) for e in train}
    assert not [r.id for r in rows if normalise(r.response) in seen
                or normalise(r.request) in seen]
    c = heldout.handwritten_rows()
    assert not {normalise(r.request) for r in rows} & {normalise(r.request) for r in c}
    assert not [r.id for r in rows if is_heldout_response(r.response)]


SET_J, SET_L, SET_N, SET_O, SET_P, SET_Q, SET_R, SET_S, SET_U, SET_V, SET_W, SET_X = (
    SET_I.with_name(f"heldout_outcomes_{s}.jsonl") for s in "jlnopqrsuvwx")
# the scored sets in the order they were written (None: set C); a fresh set may repeat no
# request of a set before it
SCORED_ORDER = (None, SET_I, SET_J, SET_L, SET_N, SET_O, SET_P, SET_Q, SET_R, SET_S, SET_U,
                SET_V, SET_W, SET_X)


def _earlier(path: Path) -> tuple[Path | None, ...]:
    return SCORED_ORDER[:SCORED_ORDER.index(path)]


# set: (class counts, off-topic kinds, whether it was checked for 8-word runs shared with the
#       training text under both tokenisations)
FRESH = {
    SET_L: ({"off_topic": 57, "moralising": 40, "compliance": 39, "partial_compliance": 30,
             "plain_refusal": 27}, (14, 15, 14, 14), False),
    SET_U: ({"off_topic": 64, "moralising": 41, "compliance": 53, "partial_compliance": 36,
             "plain_refusal": 38}, (10, 17, 20, 17), True),
    SET_V: ({"off_topic": 65, "moralising": 50, "compliance": 53, "partial_compliance": 40,
             "plain_refusal": 37}, (10, 16, 22, 17), True),
    SET_W: ({"off_topic": 74, "moralising": 47, "compliance": 49, "partial_compliance": 33,
             "plain_refusal": 35}, (20, 17, 20, 17), True),
    SET_X: ({"off_topic": 66, "moralising": 42, "compliance": 51, "partial_compliance": 34,
             "plain_refusal": 35}, (14, 17, 18, 17), True),
}
# fresh blind sets, each scored once (N, O, P: session 9; Q, R, S: session 10) whose rows then
# trained (N-P since minilm-outcome-v16, Q since v17, R and S since v21), less those touching
# sets C, I, J or L
SCORED_THEN_TRAINED = {SET_N: 187, SET_O: 187, SET_P: 181, SET_Q: 260, SET_R: 243, SET_S: 245}


@pytest.mark.parametrize("path", list(FRESH), ids=lambda p: p.name)
def test_fresh_blind_sets_repeat_no_training_text(path: Path) -> None:
    """Sets L (session 8), U (session 10), V, W and X (session 11; benchmarks/data/README.md):
    blind writers, each scored once; rows equal to a training row, repeating an earlier set's
    request or (U-X) sharing an 8-word run with training text (R, S, T2 and T3 included) were
    removed before scoring."""
    import sys

    from refusalscope.scoring.train_data import handwritten_examples

    counts, kinds, runs_checked = FRESH[path]
    rows = heldout.handwritten_rows(path)
    assert Counter(r.cls for r in rows) == counts
    assert len({normalise(r.request) for r in rows}) == len(rows)
    train = handwritten_examples()
    seen = {normalise(e.response) for e in train} | {normalise(e.prompt) for e in train}
    assert not [r.id for r in rows if normalise(r.response) in seen
                or normalise(r.request) in seen]
    earlier = [r for e in _earlier(path)
               for r in (heldout.handwritten_rows(e) if e else heldout.handwritten_rows())]
    assert not {normalise(r.request) for r in rows} & {normalise(r.request) for r in earlier}
    note_kinds = Counter(json.loads(line)["note"].split("; ")[1][:6]
                         for line in path.read_text(encoding="utf-8").splitlines()
                         if '"off_topic"' in line)
    assert note_kinds == dict(zip(("kind a", "kind b", "kind c", "kind d"), kinds, strict=True))
    if not runs_checked:
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from test_scoring_heldout_c import _runs, _training_texts

    texts = _training_texts()
    strict = set().union(*(_runs(t) for t in texts))
    spaced = set().union(*(heldout.word_runs(t) for t in texts))
    assert not [r.id for r in rows
                if _runs(r.response) & strict or heldout.word_runs(r.response) & spaced]


def test_set_j_is_a_fresh_heldout_set_and_sets_k_to_t_train_without_touching_c_i_j_or_l(
        ) -> None:
    """Set J checks the fix that set K (training rows) makes for set I's off-topic misses; set
    L checks set M's (training rows written with L, blind to it); sets N, O and P train since
    minilm-outcome-v16, Q and T since v17, R, S, T2 and T3 since v21, less their rows that
    repeat a request or an 8-word run of C, I, J or L."""
    from importlib import resources

    from refusalscope.scoring.train_data import HANDWRITTEN_FILES, handwritten_examples

    rows = heldout.handwritten_rows(SET_J)
    assert Counter(r.cls for r in rows) == {"off_topic": 60, "moralising": 36, "compliance": 24}
    assert len({normalise(r.request) for r in rows}) == len(rows)
    train = handwritten_examples()
    seen = {normalise(e.response) for e in train} | {normalise(e.prompt) for e in train}
    assert not [r.id for r in rows if normalise(r.response) in seen
                or normalise(r.request) in seen]

    # strict: [a-z0-9]+ words; sets M to T are checked both ways, set K (older) the first only
    runs = heldout.word_runs

    held = heldout.handwritten_rows() + heldout.handwritten_rows(SET_I) + rows \
        + heldout.handwritten_rows(SET_L)
    held_runs = set().union(*(runs(r.response) for r in held))
    strict_runs = set().union(*(runs(r.response, strict=True) for r in held))
    held_requests = {normalise(r.request) for r in held}
    folder = resources.files("refusalscope.scoring.resources")
    k_files = [f for f in HANDWRITTEN_FILES
               if re.fullmatch(r"handwritten_outcomes_[kmnopqrst]\d?\.jsonl", f)]
    assert len(k_files) == 14
    for name in k_files:  # sets K to T repeat no request of C, I, J or L, share no 8-word run
        for line in folder.joinpath(name).read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            assert normalise(d["request"]) not in held_requests, d["id"]
            assert not runs(d["response"]) & held_runs, d["id"]
            if "_k" not in name:  # set K (older) was checked the first way only
                assert not runs(d["response"], strict=True) & strict_runs, d["id"]
    for path, n in SCORED_THEN_TRAINED.items():  # the training copies: rows of the scored sets
        scored = path.read_text(encoding="utf-8").splitlines()
        trained = folder.joinpath(path.name.replace("heldout", "handwritten")).read_text(
            encoding="utf-8").splitlines()
        assert len(scored) == n and set(trained) <= set(scored) and len(trained) > 0.85 * n
