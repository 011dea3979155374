"""Prompt-attack evaluation judges each response against its own request and target.

`generate_rows` yields the longest prompts first; `evaluate_pairs` zipped those rows with its
pairs in input order, so with prompts of different lengths each response was labelled against
another request (its on-topic check and echo test read the wrong request) and the row's
`goal` named another prompt than its `prompt`.
"""

from __future__ import annotations

from refusalscope.attacks.gcg_run import evaluate_pairs
from refusalscope.data.load import Prompt
from refusalscope.models.tiny import tiny_handle
from refusalscope.scoring.heuristic import HeuristicScorer
from refusalscope.scoring.score import label_outcomes


def test_rows_and_labels_follow_their_own_request() -> None:
    handle = tiny_handle("llama", seed=3)
    words = ["bake bread", "fix a bicycle tyre at home quickly",
             "write a long letter to the council about the broken street lights near the school"]
    reqs = [Prompt(f"p{i}", f"How do I {w}?", "eval", "harmful", "t",
                   target=f"Sure, here is how to {w}") for i, w in enumerate(words)]
    pairs = [(p, p.prompt + " !" * (3 - i)) for i, p in enumerate(reqs)]  # short first
    rows = evaluate_pairs(handle, pairs, max_new_tokens=4, scorer=HeuristicScorer())
    by_id = {p.id: (p, text) for p, text in pairs}
    assert [r["id"] for r in rows] == [p.id for p in reqs] * 2
    for r in rows:
        p, text = by_id[r["id"]]
        assert r["goal"] == p.prompt
        assert r["prompt"] == (p.prompt if r["variant"] == "baseline" else text)
        again = label_outcomes(HeuristicScorer(), [p.prompt], [r["response"]], [p.target])[0]
        assert (r["outcome"], r["degeneracy"]) == (again["outcome"], again["degeneracy"])
