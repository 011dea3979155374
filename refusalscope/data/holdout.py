"""Keep training data away from held-out prompts: the data build's duplicate rule, applied to
any training source.

The data build drops exact duplicates (normalised text equal) and near duplicates (word-set
Jaccard at or above its threshold, 0.7 by default) across the whole pool before it splits, so
no `attack-train` prompt is a near copy of an `eval` or `direction` prompt. Training pairs from
elsewhere (PyRIT's rated responses, a user's `--data` file, pairs made by `data pairs`) never
went through that build, so `HeldOut.filter` applies the same rule, with the build's own
threshold, to every source before an attack trains on it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from refusalscope.data.dedup import exact_key, word_set

T = TypeVar("T")
HELD_OUT_SPLITS = ("eval", "direction")
DEFAULT_THRESHOLD = 0.7


@dataclass
class HeldOut:
    """The held-out prompts (word sets indexed by word) and the near-duplicate threshold."""

    prompts: list[tuple[str, str]]  # (id, prompt)
    threshold: float = DEFAULT_THRESHOLD
    _keys: dict[str, str] = field(default_factory=dict, repr=False)
    _sets: list[frozenset[str]] = field(default_factory=list, repr=False)
    _index: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, list[int]] = defaultdict(list)
        for i, (pid, text) in enumerate(self.prompts):
            self._keys.setdefault(exact_key(text), pid)
            words = word_set(text)
            self._sets.append(words)
            for w in words:
                index[w].append(i)
        self._index = dict(index)

    @classmethod
    def from_built(cls) -> HeldOut:
        """`eval` and `direction` prompts (harmful and harmless) of the built data, with the
        threshold the build used (its report), so the rule is the build's own. No built data:
        nothing is held out."""
        from refusalscope.data.build import HARMFUL_FILE, HARMLESS_FILE, REPORT_FILE, built_dir
        from refusalscope.data.load import load_split

        sides = [h for h, f in ((False, HARMFUL_FILE), (True, HARMLESS_FILE))
                 if (built_dir() / f).is_file()]
        prompts = [(p.id, p.prompt) for s in HELD_OUT_SPLITS for harmless in sides
                   for p in load_split(s, harmless=harmless)]
        threshold = DEFAULT_THRESHOLD
        report = built_dir() / REPORT_FILE
        if report.is_file():
            threshold = float(json.loads(report.read_text("utf-8"))
                              .get("config", {}).get("near_dup_threshold", threshold))
        return cls(prompts, threshold)

    def match(self, text: str) -> dict[str, Any] | None:
        """The held-out prompt `text` duplicates (`{id, reason, jaccard}`), or None."""
        key = exact_key(text)
        if key in self._keys:
            return {"id": self._keys[key], "reason": "exact", "jaccard": 1.0}
        words = word_set(text)
        candidates = sorted({i for w in words for i in self._index.get(w, ())})
        best: tuple[float, int] | None = None
        for i in candidates:
            other = self._sets[i]
            inter = len(words & other)
            sim = inter / (len(words) + len(other) - inter) if words or other else 1.0
            if sim >= self.threshold and (best is None or sim > best[0]):
                best = (sim, i)
        if best is None:
            return None
        return {"id": self.prompts[best[1]][0], "reason": "near", "jaccard": round(best[0], 4)}

    def filter(self, items: Iterable[T], prompt_of: Callable[[T], str]
               ) -> tuple[list[T], list[dict[str, Any]]]:
        """(items whose prompt duplicates no held-out prompt, one drop record per other item).

        Example:
            kept, dropped = HeldOut.from_built().filter(pairs, lambda p: p.prompt)
        """
        kept: list[T] = []
        dropped: list[dict[str, Any]] = []
        cache: dict[str, dict[str, Any] | None] = {}
        for item in items:
            text = prompt_of(item)
            if text not in cache:
                cache[text] = self.match(text)
            hit = cache[text]
            if hit is None:
                kept.append(item)
            else:
                dropped.append({"prompt": text[:60], "duplicate_of": hit["id"],
                                "reason": hit["reason"], "jaccard": hit["jaccard"]})
        return kept, dropped


def summarise_drops(dropped: Sequence[dict[str, Any]]) -> str:
    """`"3 near, 1 exact"`-style text for a list of drop records ("none" when empty)."""
    counts: dict[str, int] = defaultdict(int)
    for d in dropped:
        counts[d["reason"]] += 1
    return ", ".join(f"{n} {r}" for r, n in sorted(counts.items())) or "none"
