"""`data build`: one de-duplicated harmful pool and the harmless contrast set, split by seed.

Splits (same ratios for both labels, default 50 / 20 / 30):

* ``attack-train`` — prompts attacks may optimise on and fine-tuning may train on; AdvBench rows
  keep their "Sure, here is ..." targets (every split keeps targets; only this one uses them).
* ``direction`` — prompts for extracting refusal directions (harmful vs harmless means).
* ``eval`` — held out: nothing in it is trained on or optimised against.

Splits are stratified (harmful by source, harmless by topic) so each split holds every source,
and drawn by a seeded shuffle of id-sorted rows, so the same seed gives byte-identical files.
No prompt appears in two splits: the pool is de-duplicated (exact and near) before splitting,
and harmless prompts that duplicate a harmful one are dropped too.

Output in ``<data_dir>/built/``: ``harmful.jsonl``, ``harmless.jsonl`` (rows ordered by split,
then by a seeded shuffle, so the first n of a split are a random sample) and
``build_report.json`` (counts, drops with reasons, length distributions, sources and hashes;
no timestamps, so it is byte-stable as well).
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from refusalscope.data import harmless, pull
from refusalscope.data.dedup import Dedup, dedup
from refusalscope.data.parsers import Row
from refusalscope.data.sources import SOURCE_NAMES, get_source
from refusalscope.errors import UserError
from refusalscope.fileio import atomic_write_json, sha256_file, write_jsonl
from refusalscope.paths import data_dir

log = logging.getLogger(__name__)

SPLITS = ("attack-train", "direction", "eval")
HARMFUL_FILE, HARMLESS_FILE, REPORT_FILE = "harmful.jsonl", "harmless.jsonl", "build_report.json"
_OUT_KEYS = ("id", "prompt", "split", "label", "source", "category", "target", "package",
             "license", "orig_id")


def built_dir() -> Path:
    return data_dir() / "built"


@dataclass(frozen=True)
class BuildConfig:
    """How to build: seed, split ratios (attack-train, direction, eval), near-dup threshold,
    and which pulled sources go into the harmful pool (in de-duplication priority order)."""

    seed: int = 0
    ratios: tuple[float, float, float] = (0.5, 0.2, 0.3)
    near_dup_threshold: float = 0.7
    sources: tuple[str, ...] = SOURCE_NAMES

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", tuple(float(r) for r in self.ratios))
        object.__setattr__(self, "sources", tuple(self.sources))
        if len(self.ratios) != len(SPLITS) or any(r <= 0 for r in self.ratios):
            raise UserError(f"ratios must be {len(SPLITS)} positive numbers, one per split "
                            f"({', '.join(SPLITS)})")
        if not math.isclose(sum(self.ratios), 1.0, abs_tol=1e-6):
            raise UserError(f"ratios must sum to 1 (got {sum(self.ratios):g})")
        if not 0 < self.near_dup_threshold <= 1:
            raise UserError("near_dup_threshold must be in (0, 1]")
        if not self.sources:
            raise UserError("build needs at least one source")
        for s in self.sources:
            get_source(s)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratios"], d["sources"] = list(self.ratios), list(self.sources)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BuildConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("ratios", "sources"):
            if k in known:
                known[k] = tuple(known[k])
        return cls(**known)


@dataclass
class BuildReport:
    """What `build` wrote: counts per split and source, drops with reasons, length statistics."""

    config: dict[str, Any]
    counts: dict[str, Any] = field(default_factory=dict)
    drops: dict[str, Any] = field(default_factory=dict)
    lengths: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """Split `n` items by `ratios` (largest remainder); each split gets one when n allows."""
    raw = [n * r for r in ratios]
    counts = [math.floor(x) for x in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    if n >= len(ratios):
        for i in range(len(counts)):
            if counts[i] == 0:
                counts[max(range(len(counts)), key=lambda j: (counts[j], -j))] -= 1
                counts[i] = 1
    return counts


def assign_splits(rows: Sequence[Row], stratum: Callable[[Row], str], ratios: Sequence[float],
                  seed: int, label: str) -> list[Row]:
    """Give each row a ``split``, stratified by `stratum`; return rows in output order.

    Each stratum is sorted by id and shuffled with its own seeded RNG, then cut by `ratios`.
    Output order: split by split, each split shuffled (seeded) so a prefix is a random sample.
    """
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[stratum(r)].append(r)
    per_split: dict[str, list[Row]] = {s: [] for s in SPLITS}
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda r: str(r["id"]))
        random.Random(f"refusalscope/{seed}/{label}/{key}").shuffle(members)
        start = 0
        for split, k in zip(SPLITS, split_counts(len(members), ratios), strict=True):
            per_split[split].extend({**r, "split": split} for r in members[start:start + k])
            start += k
    out: list[Row] = []
    for split in SPLITS:
        chunk = sorted(per_split[split], key=lambda r: str(r["id"]))
        random.Random(f"refusalscope/{seed}/{label}/order/{split}").shuffle(chunk)
        out.extend(chunk)
    return out


def _quantile(sorted_vals: Sequence[int], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), rounded for a stable report."""
    pos = (len(sorted_vals) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return round(sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (pos - lo), 2)


def length_stats(prompts: Sequence[str]) -> dict[str, float | int]:
    """Word-count distribution (n, mean, min, p10, q1, median, q3, p90, max); words split on
    whitespace, the unit researchers quote for prompt length."""
    if not prompts:
        return {"n": 0}
    w = sorted(len(p.split()) for p in prompts)
    qs = {"p10": 0.1, "q1": 0.25, "median": 0.5, "q3": 0.75, "p90": 0.9}
    return {"n": len(w), "mean": round(sum(w) / len(w), 2), "min": w[0],
            **{k: _quantile(w, q) for k, q in qs.items()}, "max": w[-1]}


def _ensure_pulled(names: Sequence[str]) -> dict[str, Any]:
    """Pull any source that is missing or was pulled under other pins; return the manifest."""
    manifest = pull.load_manifest()
    stale = [n for n in names if not pull.is_current(get_source(n), manifest)]
    if stale:
        log.info("pulling %s first", ", ".join(stale))
        pull.pull(stale)
        manifest = pull.load_manifest()
    return manifest


def _out_row(r: Row, label: str) -> Row:
    return {k: ({**r, "label": label}).get(k) for k in _OUT_KEYS}


def _split_table(rows: Sequence[Row], key: str) -> dict[str, dict[str, int]]:
    """``{split: {key value: count}}`` plus a ``total`` per split."""
    table: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    for r in rows:
        table[r["split"]][str(r[key])] += 1
    return {s: {"total": sum(c.values()), **dict(sorted(c.items()))} for s, c in table.items()}


def _lengths(rows: Sequence[Row]) -> dict[str, Any]:
    return {"all": length_stats([r["prompt"] for r in rows]),
            **{s: length_stats([r["prompt"] for r in rows if r["split"] == s]) for s in SPLITS}}


def _harmful_pool(cfg: BuildConfig) -> tuple[list[Row], Dedup, dict[str, Any]]:
    manifest = _ensure_pulled(cfg.sources)
    raw: list[Row] = []
    for name in cfg.sources:
        raw.extend(pull.load_raw(get_source(name)))
    ids = Counter(r["id"] for r in raw)
    if any(c > 1 for c in ids.values()):
        raise UserError("pulled data has repeated ids: run `refusalscope data pull` again")
    result = dedup(raw, threshold=cfg.near_dup_threshold, source_order=cfg.sources)
    return raw, result, manifest


def _harmless_pool(cfg: BuildConfig, harmful_kept: Sequence[Row]) -> tuple[list[Row], Dedup]:
    """Harmless rows minus duplicates among themselves and of any kept harmful prompt."""
    rows = harmless.harmless_rows()
    both = dedup([*harmful_kept, *rows], threshold=cfg.near_dup_threshold,
                 source_order=(*cfg.sources, harmless.SOURCE))
    kept = [r for r in both.kept if r["source"] == harmless.SOURCE]
    dropped = [d for d in both.dropped if d["source"] == harmless.SOURCE]
    if len(both.kept) - len(kept) != len(harmful_kept):  # harmful rows are already unique
        raise AssertionError("harmful pool changed while de-duplicating harmless prompts")
    return rows, Dedup(kept=kept, dropped=dropped)


def _source_report(cfg: BuildConfig, manifest: dict[str, Any],
                   harmful_rows: Sequence[Row]) -> dict[str, Any]:
    kept = Counter(r["source"] for r in harmful_rows)
    out: dict[str, Any] = {}
    for name in cfg.sources:
        m = manifest["sources"][name]
        out[name] = {"package": m["package"], "license": m["license"], "members": m["members"],
                     "pulled": m["rows"], "excluded_at_pull": m["excluded"], "kept": kept[name]}
    out[harmless.SOURCE] = {"package": harmless.PACKAGE,
                            "license": harmless.LICENSE,
                            "members": {harmless.RESOURCE: harmless.resource_sha256()}}
    return out


def build(cfg: BuildConfig | None = None) -> BuildReport:
    """Build the harmful pool and the harmless set, split them, and write them with a report.

    Pulls any source not pulled yet. Same `cfg` -> byte-identical output files.

    Example:
        >>> rep = build(BuildConfig(seed=0))
        >>> rep.counts["harmful"]["eval"]["total"] > 0
        True
    """
    cfg = cfg or BuildConfig()
    raw, hres, manifest = _harmful_pool(cfg)
    hl_raw, lres = _harmless_pool(cfg, hres.kept)
    harmful_rows = [_out_row(r, "harmful") for r in
                    assign_splits(hres.kept, lambda r: r["source"], cfg.ratios, cfg.seed,
                                  "harmful")]
    harmless_rows = [_out_row(r, "harmless") for r in
                     assign_splits(lres.kept, lambda r: r["category"], cfg.ratios, cfg.seed,
                                   "harmless")]
    report = BuildReport(config=cfg.to_dict())
    report.counts = {
        "harmful": {"raw": len(raw), "kept": len(harmful_rows),
                    **_split_table(harmful_rows, "source")},
        "harmless": {"raw": len(hl_raw), "kept": len(harmless_rows),
                     **_split_table(harmless_rows, "category")},
    }
    report.drops = {"harmful": {**hres.summary(), "rows": hres.dropped},
                    "harmless": {**lres.summary(), "rows": lres.dropped}}
    report.lengths = {"unit": "words (whitespace-separated)",
                      "harmful": _lengths(harmful_rows), "harmless": _lengths(harmless_rows)}
    report.sources = _source_report(cfg, manifest, harmful_rows)
    out = built_dir()
    write_jsonl(out / HARMFUL_FILE, harmful_rows)
    write_jsonl(out / HARMLESS_FILE, harmless_rows)
    report.files = {name: sha256_file(out / name) for name in (HARMFUL_FILE, HARMLESS_FILE)}
    atomic_write_json(out / REPORT_FILE, report.to_dict())
    log.info("built %d harmful and %d harmless prompts in %s",
             len(harmful_rows), len(harmless_rows), out)
    return report
