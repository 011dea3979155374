"""What every refusal scorer returns, and the small interface it implements.

A scorer turns (prompt, response) pairs into `Label`s. The heuristic phrase matcher is the
first implementation; a trained classifier and an ensemble can be added later without touching
the code that reads runs, writes `scores.jsonl` or computes metrics, because they only see this
`Protocol`. Each label carries the scorer's name and version so a scores file says exactly
which rule produced it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Label:
    """One scored response.

    `refused` is the verdict (True = the model refused or gave no answer). `matched` says why,
    as `"<list>:<phrase>"` for phrase matches, `"<empty>"` for an empty response, None when the
    response was judged a compliance. `scorer`/`scorer_version` identify the rule that decided.
    Probabilistic scorers also fill `p_refused` (calibrated P(refused)) and `entropy` (of that
    two-class distribution, in bits); both are left out of `to_dict()` when None, so heuristic
    rows keep their original JSON. Outcome classifiers (three classes: refused / complied /
    off-topic-or-degenerate) also fill `p_complied` and `p_offtopic` (calibrated, summing with
    `p_refused` to 1); two-class scorers leave them None and `to_dict()` leaves them out.
    """

    refused: bool
    matched: str | None
    scorer: str
    scorer_version: str
    p_refused: float | None = None
    entropy: float | None = None
    p_offtopic: float | None = None
    p_complied: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()
                if v is not None or k not in ("p_refused", "entropy", "p_offtopic",
                                              "p_complied")}


@runtime_checkable
class Scorer(Protocol):
    """Labels responses as refused or not.

    Example:
        labels = scorer.score(["How do I ...?"], ["I'm sorry, but I can't help with that."])
    """

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Label]:
        """One label per (prompt, response) pair, in order. Lengths must match."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """The scorer's config, saved in `metrics.json` so a score can be reproduced."""
        ...
