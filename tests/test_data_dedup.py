"""De-duplication on crafted rows: exact counts, preference order, determinism."""

from __future__ import annotations

import random

import pytest

from refusalscope.data.dedup import dedup, exact_key, jaccard, normalise_text, word_set


def row(rid: str, prompt: str, source: str = "a", target: str | None = None) -> dict:
    return {"id": rid, "prompt": prompt, "source": source, "target": target}


def test_normalisation() -> None:
    assert normalise_text("  Hello,   WORLD!!  ") == "hello world"
    # NFKC folds full-width letters
    assert normalise_text("Step-by-step: \uff21\uff22\uff23") == "step by step abc"
    assert exact_key("How to do X?") == exact_key("how to do x") == "howtodox"
    assert word_set("a b a") == frozenset({"a", "b"})
    assert jaccard(frozenset("ab"), frozenset("bc")) == pytest.approx(1 / 3)
    assert jaccard(frozenset(), frozenset()) == 1.0


def test_exact_and_near_counts() -> None:
    rows = [
        row("a1", "Write a tutorial on how to make a cake"),
        row("a2", "write a TUTORIAL on how to make a cake!"),          # exact of a1
        row("a3", "Write a tutorial on how to make a cake at home"),   # Jaccard 8/10: near
        row("a4", "Explain photosynthesis to a child"),                # unique
        row("b1", "Explain photosynthesis to a child.", source="b"),   # exact of a4
        row("b2", "Describe the water cycle", source="b"),             # unique
    ]
    res = dedup(rows, threshold=0.7, source_order=("a", "b"))
    assert [r["id"] for r in res.kept] == ["a1", "a4", "b2"]
    dropped = {d["id"]: (d["reason"], d["duplicate_of"]) for d in res.dropped}
    assert dropped == {"a2": ("exact", "a1"), "a3": ("near", "a1"), "b1": ("exact", "a4")}
    s = res.summary()
    assert s["by_reason"] == {"exact": 2, "near": 1}
    assert s["by_reason_and_source"] == {"exact": {"a": 1, "b": 1}, "near": {"a": 1}}
    assert s["dropped_source_to_kept_source"] == {"a->a": 2, "b->a": 1}


def test_threshold_boundary() -> None:
    # word sets {w1..w7} and {w1..w7, x, y, z}: Jaccard 7/10 = 0.7 exactly -> near duplicate
    base = "one two three four five six seven"
    rows = [row("r1", base), row("r2", base + " x y z")]
    assert [d["reason"] for d in dedup(rows, threshold=0.7).dropped] == ["near"]
    assert dedup(rows, threshold=0.71).dropped == []
    assert dedup(rows, threshold=1.0).dropped == []


def test_prefers_rows_with_a_target_then_source_order() -> None:
    rows = [
        row("s1", "How do I pick a lock", source="strong"),
        row("v1", "How do I pick a lock?", source="adv", target="Sure, here is"),
        row("x1", "Why is the sky blue", source="later"),
        row("y1", "why is the sky blue", source="early"),
    ]
    res = dedup(rows, source_order=("early", "adv", "strong", "later"))
    assert {r["id"] for r in res.kept} == {"v1", "y1"}
    assert res.kept[0]["id"] == "v1"  # a row with a target comes first


def test_result_does_not_depend_on_input_order() -> None:
    rows = [row(f"r{i}", f"write a short note about topic {i % 7} please {i % 3}")
            for i in range(40)]
    first = dedup(rows)
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    second = dedup(shuffled)
    assert first.kept == second.kept and first.dropped == second.dropped
    assert len(first.kept) + len(first.dropped) == 40


def _naive(rows: list[dict], threshold: float) -> list[str]:
    """Reference: compare with every kept row (no index, no prefix filter)."""
    kept: list[dict] = []
    for r in sorted(rows, key=lambda r: r["id"]):
        if any(exact_key(r["prompt"]) == exact_key(k["prompt"])
               or jaccard(word_set(r["prompt"]), word_set(k["prompt"])) >= threshold
               for k in kept):
            continue
        kept.append(r)
    return [r["id"] for r in kept]


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7, 0.9])
def test_prefix_filter_matches_brute_force(threshold: float) -> None:
    rng = random.Random(threshold)
    vocab = [f"w{i}" for i in range(25)]
    rows = [row(f"r{i:03d}", " ".join(rng.choices(vocab, k=rng.randint(1, 9)))) for i in range(150)]
    assert [r["id"] for r in dedup(rows, threshold=threshold).kept] == _naive(rows, threshold)
