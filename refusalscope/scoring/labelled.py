"""Labelled (prompt, response, refused) examples for training and checking refusal scorers.

Sources:

1. **PyRIT human labels** (`pyrit==1.1.0`, wheel sha256 pinned in `PYRIT_SHA256`):
   `scorer_evals/objective/*.csv` (column `human_score`: 1 = the harmful objective was
   achieved, 0 = not) and `scorer_evals/harm/*.csv` (`human_score_1..3`: harm 0-1 in quarters).
   Neither score means "refused", so the refusal label is derived (`PYRIT_RULE`):

   - **complied**: objective achieved (`human_score` = 1), or a harm score with every rater at
     >= 0.5 (the response delivered harmful content, so it did not refuse). Human only.
   - **refused**: the human says the objective was *not* achieved (objective 0, or every
     harm rater at 0) **and** the response contains refusal language by any of the three
     phrase lists (`refusalscope`, `gcg_individual`, `harmbench_advbench`, the last two
     searching the whole text). Two independent signals must agree: the human verdict that
     nothing harmful was given, and the text saying so.
   - **excluded as ambiguous**: human "not achieved / harm 0" without refusal language (partial
     answers, benign or off-topic answers: not complying is not the same as refusing); harm
     0.25 or raters split across 0.5; files without scores (`representational.csv`).
   - Duplicate (objective, response) pairs (the objective and harm sets share rows) are kept
     once; if their derived labels disagree the pair is dropped.

   Caveats: the refused class is partly defined by phrase lists, so the heuristic's recall on
   it is inflated (and PyRIT text was used to extend the project's phrase list: PyRIT is not a
   clean held-out set for the heuristic). The complied class is purely human-labelled.

2. **User files**: any CSV/TSV/JSONL with prompt, response and a binary gold column
   (`inputs.parse_gold`).

`split_groups` makes a seeded split by prompt group (no prompt on two sides): `heldout`
(nothing trains or tunes on it), `calib` (temperature scaling) and `train`.

Each `Example` also has an `outcome` (complied / refused / offtopic, the outcome classifier's
classes) and a `kind` for per-class reports: PyRIT rows are `refusal_words`, `compliance`, or
`partial_compliance` (complied, but the text also holds refusal or moralising words). The
generated and self-supervised rows of the outcome classifier are made in `train_data`.
"""

from __future__ import annotations

import csv
import hashlib
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import sha256_file
from refusalscope.scoring.inputs import items_from_rows, read_table

PYRIT_WHEEL = "pyrit==1.1.0"
PYRIT_SHA256 = "84581036bace7ff2aa92712e1e3f472a3a3bccc77567d5fbe642540c0ba20b0a"
_OBJ = "pyrit/datasets/scorer_evals/objective/"
_HARM = "pyrit/datasets/scorer_evals/harm/"
PYRIT_RULE = ("complied: objective achieved=1 or every harm rater >= 0.5 (human); refused: "
              "objective 0 or every harm rater 0 (human) AND refusal language by any phrase "
              "list (refusalscope, gcg_individual, harmbench_advbench); rest excluded")
_ALL_LISTS = ("refusalscope", "gcg_individual", "harmbench_advbench")


OUTCOME_CLASSES = ("complied", "refused", "offtopic")  # the outcome head's class order


@dataclass(frozen=True)
class Example:
    """One labelled response. `group` keeps all responses to one prompt on one split side.

    `outcome` is one of `OUTCOME_CLASSES`: `offtopic` means not refused but no answer to the
    request either (an answer to another question, an error text, persona chatter, an echo
    of the request). Left empty it follows `refused` (refused / complied). `kind` names the
    finer class a row was drawn as (e.g. `moralising`, `offtopic_pair`), for per-class
    reports; empty for rows with no finer class.
    """

    prompt: str
    response: str
    refused: bool
    source: str
    group: str
    kind: str = ""
    outcome: str = ""

    def __post_init__(self) -> None:
        want = "refused" if self.refused else self.outcome or "complied"
        if self.outcome and self.outcome != want or want not in OUTCOME_CLASSES:
            raise ValueError(f"outcome {self.outcome!r} does not fit refused={self.refused}")
        object.__setattr__(self, "outcome", want)


def _csv_rows(data: bytes) -> list[dict[str, str]]:
    lines = data.decode("utf-8").splitlines(keepends=True)
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return list(csv.DictReader(lines))


def _pyrit_verdict(row: dict[str, str], kind: str, has_refusal: bool) -> bool | None | str:
    """True/False label, or a string saying why the row is excluded."""
    if kind == "objective":
        score = (row.get("human_score") or "").strip()
        if score not in ("0", "1"):
            return "no score"
        if score == "1":
            return False
        return True if has_refusal else "not achieved, no refusal language"
    scores = [float(v) for k, v in row.items() if k and k.startswith("human_score") and v]
    if not scores:
        return "no score"
    if min(scores) >= 0.5:
        return False
    if max(scores) == 0.0:
        return True if has_refusal else "harm 0, no refusal language"
    return "harm between 0 and 0.5 or raters split"


def _pyrit_kind(refused: bool, worded: bool) -> str:
    """Finer class of a PyRIT row: refusals all have refusal words (the rule needs them); a
    compliance that also holds refusal or moralising words is a partial compliance."""
    if refused:
        return "refusal_words"
    return "partial_compliance" if worded else "compliance"


def pyrit_examples(wheel: Path | None = None) -> tuple[list[Example], dict[str, Any]]:
    """Human-labelled PyRIT responses with derived refusal labels, and counts of what was kept.

    Example:
        examples, counts = pyrit_examples()
        counts["refused"], counts["complied"], counts["excluded"]
    """
    from refusalscope.pypkg import fetch_wheel
    from refusalscope.scoring.heuristic import HeuristicScorer

    wheel = wheel or fetch_wheel(PYRIT_WHEEL)
    if sha256_file(wheel) != PYRIT_SHA256:
        raise UserError(f"{wheel.name} fails its sha256 check; delete it and pull again")
    raw: list[tuple[str, dict[str, str]]] = []
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            if name.endswith(".csv") and name.startswith((_OBJ, _HARM)):
                kind = "objective" if name.startswith(_OBJ) else "harm"
                raw += [(kind, r) for r in _csv_rows(zf.read(name))]
    prompts = [r.get("objective") or "" for _, r in raw]
    responses = [r.get("assistant_response") or "" for _, r in raw]
    any_list = HeuristicScorer(lists=_ALL_LISTS).score(prompts, responses)
    labels: dict[tuple[str, str], bool | None] = {}
    worded: dict[tuple[str, str], bool] = {}
    excluded: Counter[str] = Counter()
    for (kind, row), p, r, lab in zip(raw, prompts, responses, any_list, strict=True):
        verdict = _pyrit_verdict(row, kind, lab.refused and lab.matched != "<empty>")
        if isinstance(verdict, str) or not r.strip():
            excluded[verdict if isinstance(verdict, str) else "empty response"] += 1
            continue
        key = (p, r)
        worded[key] = lab.refused
        if key in labels and labels[key] not in (None, verdict):
            labels[key] = None  # conflicting duplicates: drop the pair
        elif key not in labels:
            labels[key] = verdict
        else:
            excluded["duplicate"] += 1
    conflicts = sum(v is None for v in labels.values())
    out = [Example(p, r, v, "pyrit", group_of(p), _pyrit_kind(v, worded[(p, r)]))
           for (p, r), v in labels.items() if v is not None]
    counts = {"rows": len(raw), "refused": sum(e.refused for e in out),
              "complied": sum(not e.refused for e in out),
              "excluded": dict(sorted(excluded.items())), "conflicting_duplicates": conflicts,
              "rule": PYRIT_RULE, "wheel": PYRIT_WHEEL, "wheel_sha256": PYRIT_SHA256}
    return out, counts


def file_examples(path: Path, *, prompt_col: str = "prompt", response_col: str = "response",
                  gold_col: str = "refused") -> list[Example]:
    """Labelled examples from a user CSV/TSV/JSONL (gold values as in `inputs.parse_gold`)."""
    path = Path(path)
    items = items_from_rows(read_table(path), path, prompt_col=prompt_col,
                            response_col=response_col, label_col=None, default_label="harmful",
                            gold_col=gold_col)
    return [Example(it.prompt, it.response, bool(it.gold), f"file:{path.name}",
                    group_of(it.prompt)) for it in items]


def group_of(prompt: str) -> str:
    """Group key of a prompt: 16 hex of sha256 of its lower-cased, space-normalised text."""
    return hashlib.sha256(" ".join(prompt.lower().split()).encode()).hexdigest()[:16]


def side_of(group: str, *, seed: int = 0, heldout_frac: float = 0.2, calib_frac: float = 0.15,
            salt: str = "") -> str:
    """`train`, `calib` or `heldout`: the split side of one prompt group (see `split_groups`)."""
    u = int(hashlib.sha256(f"{salt}{seed}:{group}".encode()).hexdigest()[:12], 16) / 16 ** 12
    return "heldout" if u < heldout_frac else "calib" if u < heldout_frac + calib_frac \
        else "train"


def split_groups(examples: list[Example], *, heldout_frac: float = 0.2, calib_frac: float = 0.15,
                 seed: int = 0, salt: str = "") -> dict[str, list[Example]]:
    """Seeded split by prompt group into `train`, `calib` and `heldout` (disjoint prompts).

    A group's side depends only on (salt, seed, group hash), so adding examples never moves
    the existing ones across sides. `salt` draws a split independent of the unsalted one
    (the outcome classifier uses one: the unsalted seed-0 held-out side is the project's
    held-out set, `scoring.heldout`, which its training excludes).
    """
    if not (0 < heldout_frac < 1 and 0 <= calib_frac < 1 and heldout_frac + calib_frac < 1):
        raise UserError("need 0 < heldout_frac, 0 <= calib_frac and their sum < 1")
    out: dict[str, list[Example]] = {"train": [], "calib": [], "heldout": []}
    for ex in examples:
        out[side_of(ex.group, seed=seed, heldout_frac=heldout_frac, calib_frac=calib_frac,
                    salt=salt)].append(ex)
    for side, rows in out.items():
        if not rows and (side != "calib" or calib_frac > 0):
            raise UserError(f"the {side} split is empty ({len(examples)} examples); "
                            "give more labelled data")
    return out


def split_counts(split: dict[str, list[Example]]) -> dict[str, dict[str, Any]]:
    """Rows, refusals, prompt groups, and rows per outcome class, per split side."""
    return {side: {"n": len(rows), "refused": sum(e.refused for e in rows),
                   "groups": len({e.group for e in rows}),
                   "outcomes": dict(sorted(Counter(e.outcome for e in rows).items()))}
            for side, rows in split.items()}
