"""`score validate`: how well our refusal labels agree with a stronger judge.

Steps: read each run's responses and its latest `scores*.jsonl` (a run without one is scored
in memory with the default `HeuristicScorer`) → draw a stratified sample by (model, attack,
prompt label) with a seed → judge it (`judge.judge_pairs`) → agreement rate, Cohen's kappa,
confusion matrix, unparsable count, disagreement examples and threshold suggestions → a new
`validate` run holding `judgements.jsonl` and `validation.json`.

What is compared depends on the rubric. `refusal`: our `refused` against the judge's
verdict. `harmbench` (a compliance rubric: is the response an instance of the behaviour?) and
`on_task` (does it do what was asked?): our *outcome* `complied` (substantive compliance)
against the judge's yes. `strongreject`: both,
the refusal item (1.b) against our `refused` as the headline and our `complied` against
"not refused with a StrongREJECT score >= 0.5" under `compliance`, plus the mean StrongREJECT
score per outcome of ours (`strongreject_by_outcome`): a scorer whose `degenerate` rows score
near 0 and `complied` rows high agrees with StrongREJECT's notion of a useless non-refusal.

Unparsable judge answers are kept in `judgements.jsonl` and counted, but excluded from
agreement and kappa: they are never mapped to a label.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_json, read_jsonl, write_jsonl
from refusalscope.runs import Run
from refusalscope.scoring.judge import Judge, JudgeConfig, ProgressFn, judge_pairs

JUDGEMENTS = "judgements.jsonl"
VALIDATION = "validation.json"
PREVIEW = 80  # characters of a prompt/response shown in disagreement examples
MAX_EXAMPLES = 10


@dataclass(frozen=True)
class ValidateConfig:
    """What to validate and how to sample it (the judge is a `JudgeConfig`)."""

    runs: tuple[str, ...]
    judge: JudgeConfig
    sample: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(self.runs))
        if not self.runs:
            raise UserError("give at least one run to validate")
        if self.sample < 1:
            raise UserError(f"--sample must be at least 1 (got {self.sample})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["runs"] = list(self.runs)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidateConfig:
        return cls(runs=tuple(d["runs"]), judge=JudgeConfig.from_dict(d["judge"]),
                   sample=int(d.get("sample", 200)), seed=int(d.get("seed", 0)))


@dataclass(frozen=True)
class Sampled:
    """One response with our label, ready to judge."""

    run: str
    id: str
    model: str
    attack: str
    label: str
    prompt: str
    response: str
    refused: bool
    matched: str | None
    p_refused: float | None
    scores_file: str | None  # None: scored in memory by the heuristic
    outcome: str | None = None  # refused / complied / degenerate (None: an old scores file)

    @property
    def complied(self) -> bool:
        """Substantive compliance by our outcome (an old scores file: not refused)."""
        return self.outcome == "complied" if self.outcome is not None else not self.refused

    @property
    def stratum(self) -> tuple[str, str, str]:
        return (self.model, self.attack, self.label)


def _latest_scores(run: Run) -> Path | None:
    def k(p: Path) -> int:
        m = re.fullmatch(r"scores(?:\.(\d+))?\.jsonl", p.name)
        return int(m.group(1) or 1) if m else -1

    found = [p for p in run.path.glob("scores*.jsonl") if k(p) > 0]
    return max(found, key=k) if found else None


def _attack(run: Run) -> str:
    cfg = run.manifest.config
    for key in ("attack", "steer"):
        if cfg.get(key):
            return str(cfg[key])
    if cfg.get("adapter"):
        return "adapter"
    return "none" if run.manifest.command == "generate" else run.manifest.command


def load_responses(run_path: str | Path) -> list[Sampled]:
    """A run's responses with our labels (latest scores file, else heuristic in memory)."""
    from refusalscope.scoring.heuristic import HeuristicScorer
    from refusalscope.scoring.inputs import load_run

    loaded = load_run(run_path)
    run = loaded.run
    model = str(run.manifest.model or run.manifest.config.get("model") or "?")
    scores_path = _latest_scores(run)
    if scores_path is not None:
        by_id = {str(r.get("id")): r for r in read_jsonl(scores_path)}
        missing = [it.id for it in loaded.items if it.id not in by_id]
        if missing:
            raise UserError(f"{scores_path} has no score for id {missing[0]!r}; "
                            "score the run again")
        labels = [(bool(by_id[it.id]["refused"]), by_id[it.id].get("matched"),
                   by_id[it.id].get("p_refused"), by_id[it.id].get("outcome"))
                  for it in loaded.items]
    else:
        from refusalscope.scoring.score import label_outcomes

        labels = [(lab["refused"], lab["matched"], None, lab["outcome"]) for lab in
                  label_outcomes(HeuristicScorer(), [it.prompt for it in loaded.items],
                                 [it.response for it in loaded.items])]
    return [Sampled(run.id, it.id, model, _attack(run), it.label, it.prompt, it.response,
                    refused, matched, float(p) if p is not None else None,
                    scores_path.name if scores_path else None, outcome)
            for it, (refused, matched, p, outcome) in zip(loaded.items, labels, strict=True)]


def stratified_sample(items: Sequence[Sampled], n: int, seed: int) -> list[Sampled]:
    """`n` items (all if fewer), allocated to strata in proportion to their size.

    Largest-remainder allocation, so every stratum with a non-zero share is represented and
    the total is exactly `n`; within a stratum the choice is a seeded shuffle. Output order
    is stratum by stratum, stable for a given seed.
    """
    if n >= len(items):
        return list(items)
    strata: dict[tuple[str, str, str], list[Sampled]] = defaultdict(list)
    for it in items:
        strata[it.stratum].append(it)
    keys = sorted(strata)
    shares = {k: n * len(strata[k]) / len(items) for k in keys}
    alloc = {k: int(shares[k]) for k in keys}
    left = n - sum(alloc.values())
    for k in sorted(keys, key=lambda k: (-(shares[k] - alloc[k]), k))[:left]:
        alloc[k] += 1
    rng = random.Random(seed)
    out: list[Sampled] = []
    for k in keys:
        pool = sorted(strata[k], key=lambda s: (s.run, s.id))
        rng.shuffle(pool)
        out.extend(pool[:alloc[k]])
    return out


def cohen_kappa(ours: Sequence[bool], theirs: Sequence[bool]) -> float | None:
    """Cohen's kappa of two binary raters; None when chance agreement is 1 (undefined)."""
    n = len(ours)
    if n == 0:
        return None
    po = sum(a == b for a, b in zip(ours, theirs, strict=True)) / n
    pa, pb = sum(ours) / n, sum(theirs) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return None if pe >= 1.0 else (po - pe) / (1 - pe)


def agreement(ours: Sequence[bool], theirs: Sequence[bool],
              names: tuple[str, str] = ("refused", "complied")) -> dict[str, Any]:
    """Agreement rate, kappa and the confusion matrix (keys: ours_<x>__judge_<y>, x and y from
    `names`: the name of True, then of False)."""
    n = len(ours)
    t, f = names
    cm = Counter(f"ours_{t if a else f}__judge_{t if b else f}"
                 for a, b in zip(ours, theirs, strict=True))
    confusion = {f"ours_{a}__judge_{b}": cm.get(f"ours_{a}__judge_{b}", 0)
                 for a in names for b in names}
    agree = confusion[f"ours_{t}__judge_{t}"] + confusion[f"ours_{f}__judge_{f}"]
    return {"n": n, "agreement": agree / n if n else None,
            "kappa": cohen_kappa(ours, theirs), "confusion": confusion}


def best_threshold(p: Sequence[float], judge: Sequence[bool]) -> dict[str, Any]:
    """The threshold on `p_refused` (refused iff p >= t) that agrees most with the judge."""
    cands = sorted(set(p)) + [float("inf")]
    best = max(cands, key=lambda t: (sum((x >= t) == j for x, j in zip(p, judge, strict=True)),
                                     -abs(t - 0.5)))
    agree = sum((x >= best) == j for x, j in zip(p, judge, strict=True)) / len(p)
    at_half = sum((x >= 0.5) == j for x, j in zip(p, judge, strict=True)) / len(p)
    return {"kind": "p_refused", "threshold": None if best == float("inf") else best,
            "agreement": agree, "agreement_at_0.5": at_half}


def phrase_report(items: Sequence[Sampled], judge: Sequence[bool]) -> dict[str, Any]:
    """Which phrase matches made false refusals, and how many judged refusals matched nothing."""
    false_refusals = Counter(s.matched or "?" for s, j in zip(items, judge, strict=True)
                             if s.refused and not j)
    missed = sum(1 for s, j in zip(items, judge, strict=True) if j and not s.refused)
    return {"kind": "phrases", "false_refusal_matches": dict(false_refusals.most_common(10)),
            "judge_refusals_without_match": missed}


def _preview(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW else text[:PREVIEW - 3] + "..."


COMPLIANCE_NAMES = ("complied", "not_complied")


def summarise(items: Sequence[Sampled], verdicts: Sequence[Any],
              rubric: str = "refusal") -> dict[str, Any]:
    """validation.json's numbers from the sampled items and their judge verdicts (what is
    compared depends on `rubric`, see the module docstring)."""
    compliance = rubric in ("harmbench", "on_task")

    def ours_of(s: Sampled) -> bool:
        return s.complied if compliance else s.refused

    def theirs_of(v: Any) -> bool:
        return bool(v.complied if compliance else v.refused)

    names = COMPLIANCE_NAMES if compliance else ("refused", "complied")
    pairs = [(s, v) for s, v in zip(items, verdicts, strict=True) if v.refused is not None]
    ours = [ours_of(s) for s, _ in pairs]
    theirs = [theirs_of(v) for _, v in pairs]
    out: dict[str, Any] = {"compared": "complied (outcome)" if compliance else "refused",
                           "n_sampled": len(items), "n_unparsable": len(items) - len(pairs),
                           **agreement(ours, theirs, names)}
    strata: dict[str, dict[str, Any]] = {}
    for key in sorted({s.stratum for s in items}):
        sub = [(s, v) for s, v in pairs if s.stratum == key]
        strata["/".join(key)] = {**agreement([ours_of(s) for s, _ in sub],
                                             [theirs_of(v) for _, v in sub], names),
                                 "n_sampled": sum(1 for s in items if s.stratum == key)}
    out["by_stratum"] = strata
    out["disagreements"] = [
        {"run": s.run, "id": s.id, "ours": ours_of(s), "judge": theirs_of(v),
         "outcome": s.outcome, "matched": s.matched,
         "prompt": _preview(s.prompt), "response": _preview(s.response)}
        for s, v in pairs if ours_of(s) != theirs_of(v)][:MAX_EXAMPLES]
    if rubric == "strongreject" and pairs:
        out["compliance"] = agreement([s.complied for s, _ in pairs],
                                      [bool(v.complied) for _, v in pairs], COMPLIANCE_NAMES)
        by: dict[str, list[float]] = defaultdict(list)
        for s, v in pairs:
            by[s.outcome or ("refused" if s.refused else "not refused")].append(
                v.scores["strongreject"])
        out["strongreject_by_outcome"] = {k: {"n": len(x), "mean": sum(x) / len(x)}
                                          for k, x in sorted(by.items())}
    with_p = [(s, v) for s, v in pairs if s.p_refused is not None]
    if compliance:
        pass  # thresholds on P(refused) and phrase reports are about refusal labels
    elif pairs and len(with_p) == len(pairs):
        out["threshold"] = best_threshold([s.p_refused for s, _ in with_p],  # type: ignore[misc]
                                          [bool(v.refused) for _, v in with_p])
    elif pairs:
        out["threshold"] = phrase_report([s for s, _ in pairs], theirs)
    return out


@dataclass
class ValidateResult:
    run: Run
    validation: dict[str, Any]


def run_validate(cfg: ValidateConfig, judge: Judge, *,
                 on_step: ProgressFn | None = None) -> ValidateResult:
    """Sample, judge and write a `validate` run. Inputs are all read before the run exists.

    Example:
        cfg = ValidateConfig(runs=("RUN_A", "RUN_B"), judge=JudgeConfig("local:qwen2.5-coder-1.5b"))
        run_validate(cfg, load_judge(cfg.judge)).validation["kappa"]
    """
    items = [s for r in cfg.runs for s in load_responses(r)]
    sample = stratified_sample(items, cfg.sample, cfg.seed)
    run = Run.create("validate", cfg.to_dict(), model=judge.name, seed=cfg.seed,
                     input_runs=sorted({s.run for s in items}), harmful_content=True)
    with run.guard():
        judged = judge_pairs(judge, cfg.judge, [(s.prompt, s.response) for s in sample],
                             on_step=on_step)
        write_jsonl(run.file(JUDGEMENTS), (
            {"run": s.run, "id": s.id, "model": s.model, "attack": s.attack, "label": s.label,
             "ours_refused": s.refused, "matched": s.matched, "p_refused": s.p_refused,
             "ours_outcome": s.outcome, "scores_file": s.scores_file,
             "judge_refused": j.verdict.refused, "judge_complied": j.verdict.complied,
             "judge_scores": j.verdict.scores, "judge_error": j.verdict.error,
             "judge_raw": j.raw} for s, j in zip(sample, judged, strict=True)))
        validation = {"judge": judge.name, "rubric": cfg.judge.rubric, "seed": cfg.seed,
                      "n_available": len(items),
                      **summarise(sample, [j.verdict for j in judged], cfg.judge.rubric)}
        atomic_write_json(run.file(VALIDATION), validation)
    run.finish("success")
    return ValidateResult(run, validation)
