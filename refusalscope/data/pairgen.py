"""`data pairs`: harmful -> compliant training pairs at any size, made by a generator model.

A generator (by default a refusing ladder model with its refusal direction ablated, `--steer
ablate:DIRS.h5` from `probe sweep`) answers the harmful prompts of `attack-train` — never
`direction` or `eval`, and none that near-duplicates them (`data.holdout`) — `samples` times
each, sampled with a seed. Every answer is scored by the study's scorer (`scoring.factory`'s
`study`: ensemble, with the on-topic check) and kept only when its outcome is `complied`: refusals,
loops, echoes and off-topic answers are recorded with their reason and never trained on.

Storage: `data_dir()/pairs/<content id>/` with `manifest.json` (generator, steer spec with the
directions file's sha256, scorer, sampling settings, counts) and `generations.jsonl` (every
answer, kept or not, appended and fsynced batch by batch). The content id hashes what decides
the answers (generator, steer, sampling settings, seed), not how many: a rerun with a larger
`n` or `samples` continues the same folder, and a study asking for the same generator reuses
it. Sample k of every prompt comes before sample k+1 of any, so N pairs rest on as many
distinct prompts as the generator allows.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError

log = logging.getLogger(__name__)

PAIRS_DIR = "pairs"
GENERATIONS = "generations.jsonl"
MANIFEST = "manifest.json"
NAMES = "names.json"
SPLIT = "attack-train"
ProgressFn = Callable[[int, int, int], None]  # (answers generated, pairs kept, pairs wanted)


@dataclass(frozen=True)
class PairsConfig:
    """What decides the answers (hashed into the content id); `n` / `samples` say how many."""

    generator: str = "qwen2.5-coder-0.5b"
    steer: str | None = None  # a pinned `SteerSpec` string (path + sha256), or None
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 128
    seed: int = 0
    system_prompt: str | None = None
    scorer: str = "ensemble"  # ensemble | heuristic

    def __post_init__(self) -> None:
        if not self.generator:
            raise UserError("--generator must name a model")
        if self.temperature <= 0:
            raise UserError(f"--temperature must be > 0: samples of one prompt must differ "
                            f"(got {self.temperature})")
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1] (got {self.top_p})")
        if self.max_new_tokens < 8:
            raise UserError(f"--max-new-tokens must be at least 8 (got {self.max_new_tokens})")
        if self.scorer not in ("ensemble", "heuristic"):
            raise UserError(f"--scorer must be ensemble or heuristic (got {self.scorer!r})")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairsConfig:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def content_id(self) -> str:
        """12 hex digits of the sha256 of the config; the steer part by its file's sha256
        (not its path), so the same directions file anywhere gives the same id."""
        import hashlib
        import json

        d = self.to_dict()
        if self.steer:
            from refusalscope.interp.steering import SteerSpec

            spec = SteerSpec.parse(self.steer)
            d["steer"] = {**spec.to_dict(), "path": None}
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def pairs_root() -> Path:
    from refusalscope.paths import data_dir

    return data_dir() / PAIRS_DIR


def pairs_dir(cfg: PairsConfig) -> Path:
    return pairs_root() / cfg.content_id()


@dataclass
class PairsReport:
    """What one `make_pairs` call left in the folder (all answers, this call's and earlier)."""

    path: str
    wanted: int
    generated: int
    kept: int
    dropped: dict[str, int]  # reason -> answers (refused, repetitive, echo, off_topic, ...)
    unique_prompts: int  # distinct prompts behind the kept pairs
    prompts_available: int  # attack-train prompts left after the held-out filter
    held_out_dropped: int  # attack-train prompts dropped as duplicates of eval/direction
    samples: int
    wall_seconds: float  # this call
    generated_this_call: int
    exhausted: bool  # every prompt x sample done and still fewer than `wanted` kept

    @property
    def keep_rate(self) -> float:
        return self.kept / self.generated if self.generated else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "keep_rate": round(self.keep_rate, 4)}


def training_prompts() -> tuple[list[Any], int]:
    """`attack-train` harmful prompts that duplicate no held-out prompt, and how many did."""
    from refusalscope.data.holdout import HeldOut
    from refusalscope.data.load import load_split

    prompts = load_split(SPLIT)
    kept, dropped = HeldOut.from_built().filter(prompts, lambda p: p.prompt)
    return kept, len(dropped)


def drop_reason(scored: dict[str, Any]) -> str | None:
    """None for a kept answer; else `refused` or the first degeneracy reason."""
    if scored["outcome"] == "complied":
        return None
    if scored["outcome"] == "refused":
        return "refused"
    return (scored.get("degeneracy") or ["degenerate"])[0]


def _scorer(name: str) -> Any:
    from refusalscope.scoring.factory import scorer

    return scorer("heuristic" if name == "heuristic" else "study")


def score_rows(scorer: Any, checker: Any, rows: list[dict[str, Any]]) -> None:
    """Add `outcome`, `degeneracy`, `refused`, `p_refused`, `kept` and `drop` to each row."""
    from refusalscope.scoring.score import label_outcomes

    labels = label_outcomes(scorer, [r["prompt"] for r in rows], [r["response"] for r in rows],
                            relevance=checker)
    for r, lab in zip(rows, labels, strict=True):
        r.update(outcome=lab["outcome"], degeneracy=lab["degeneracy"], refused=lab["refused"],
                 scorer=f"{scorer.name}@{scorer.version}")
        if "p_refused" in lab:
            r["p_refused"] = round(lab["p_refused"], 4)
        r["drop"] = drop_reason(lab)
        r["kept"] = r["drop"] is None


def _open(cfg: PairsConfig) -> tuple[Path, list[dict[str, Any]]]:
    """The folder for `cfg` (made if new) and its rows so far (a torn last line dropped)."""
    from refusalscope.fileio import read_jsonl, write_jsonl

    folder = pairs_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    gen = folder / GENERATIONS
    rows = read_jsonl(gen) if gen.exists() else []
    if gen.exists() and gen.stat().st_size and not gen.read_bytes().endswith(b"\n"):
        write_jsonl(gen, rows)  # a kill cut the last line: rewrite without it before appending
    return folder, rows


def make_pairs(cfg: PairsConfig, n: int, *, samples: int = 4, batch_size: int = 16,
               options: Any = None, name: str | None = None,
               on_progress: ProgressFn | None = None) -> PairsReport:
    """Generate, score and append answers until `n` are kept or every prompt has `samples`.

    Resumes whatever the folder holds: answers already there are not generated again.

    Example:
        rep = make_pairs(PairsConfig(steer=pin_spec("ablate:dirs.h5")), 500, samples=4)
        rep.kept, rep.keep_rate, rep.unique_prompts
    """
    if n < 1 or samples < 1:
        raise UserError(f"--n and --samples must be at least 1 (got {n}, {samples})")
    prompts, n_held = training_prompts()
    folder, rows = _open(cfg)
    if name:
        register_name(name, folder.name)  # addressable while it is still being made
    scorer = _scorer(cfg.scorer)
    _write_manifest(folder, cfg, scorer, rows, samples, name)
    done = {r["id"] for r in rows}
    kept = sum(1 for r in rows if r["kept"])
    todo = [replace(p, id=f"{p.id}#s{k}") for k in range(samples) for p in prompts
            if f"{p.id}#s{k}" not in done]
    t0, fresh = time.perf_counter(), 0
    if kept < n and todo:
        fresh, kept = _generate(cfg, folder, todo, n, kept, batch_size, options, scorer,
                                on_progress)
        rows = _read(folder)
    _write_manifest(folder, cfg, scorer, rows, samples, name)
    return _report(folder, rows, n, prompts, n_held, samples, time.perf_counter() - t0, fresh)


def _generate(cfg: PairsConfig, folder: Path, todo: list[Any], n: int, kept: int,
              batch_size: int, options: Any, scorer: Any, on_progress: ProgressFn | None
              ) -> tuple[int, int]:
    """Generate `todo` in order, sample by sample, scoring and appending each batch; stop
    once `n` are kept. Returns (answers generated, pairs kept in all)."""
    from refusalscope.fileio import append_jsonl
    from refusalscope.generation import GenerateConfig, generate_rows
    from refusalscope.models.handle import ModelHandle
    from refusalscope.scoring.relevance import RelevanceChecker

    handle = ModelHandle.load(cfg.generator, options=options)
    hooks = []
    if cfg.steer:
        from refusalscope.interp.steering import SteerSpec

        hooks = SteerSpec.parse(cfg.steer).hooks(handle)
    gcfg = GenerateConfig(model=cfg.generator, split=SPLIT, max_new_tokens=cfg.max_new_tokens,
                          seed=cfg.seed, system_prompt=cfg.system_prompt,
                          temperature=cfg.temperature, top_p=cfg.top_p)
    checker = RelevanceChecker() if cfg.scorer == "ensemble" else None
    fresh = 0
    # `todo` is sample-major; chunks of a few batches keep that order (a run that stops early
    # has covered prompts evenly) while generate_rows sorts each chunk by length
    chunk = batch_size * 4
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        rows = generate_rows(handle, part, gcfg, batch_size=batch_size, interventions=hooks)
        batch: list[dict[str, Any]] = []
        for i, row in enumerate(rows, start=1):
            batch.append(_pair_row(row))
            if len(batch) == batch_size or i == len(part):
                kept += _flush(folder, batch, scorer, checker, append_jsonl)
                fresh += len(batch)
                batch = []
                if on_progress is not None:
                    on_progress(fresh, kept, n)
                if kept >= n:
                    rows.close()  # removes the hooks now
                    return fresh, kept
    return fresh, kept


def _pair_row(row: dict[str, Any]) -> dict[str, Any]:
    pid, _, sample = row["id"].rpartition("#s")
    return {"id": row["id"], "prompt_id": pid, "sample": int(sample), "prompt": row["prompt"],
            "source": row["source"], "category": row["category"], "response": row["response"],
            "new_tokens": row["new_tokens"], "finish_reason": row["finish_reason"]}


def _flush(folder: Path, batch: list[dict[str, Any]], scorer: Any, checker: Any,
           append: Callable[[Path, dict[str, Any]], None]) -> int:
    score_rows(scorer, checker, batch)
    for r in batch:
        append(folder / GENERATIONS, r)
    return sum(1 for r in batch if r["kept"])


def _read(folder: Path) -> list[dict[str, Any]]:
    from refusalscope.fileio import read_jsonl

    gen = folder / GENERATIONS
    return read_jsonl(gen) if gen.exists() else []


def _counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    per_prompt: dict[str, dict[str, int]] = {}
    for r in rows:
        c = per_prompt.setdefault(r["prompt_id"], {"generated": 0, "kept": 0})
        c["generated"] += 1
        c["kept"] += int(r["kept"])
    return {"generated": len(rows), "kept": sum(c["kept"] for c in per_prompt.values()),
            "dropped": dict(sorted(Counter(r["drop"] for r in rows if not r["kept"]).items())),
            "unique_prompts": sum(1 for c in per_prompt.values() if c["kept"]),
            "per_prompt": dict(sorted(per_prompt.items()))}


def _write_manifest(folder: Path, cfg: PairsConfig, scorer: Any, rows: list[dict[str, Any]],
                    samples: int, name: str | None) -> None:
    from refusalscope.fileio import atomic_write_json
    from refusalscope.runs import CONTENT_WARNING, git_revision, package_versions

    steer = None
    if cfg.steer:
        from refusalscope.interp.steering import SteerSpec

        steer = SteerSpec.parse(cfg.steer).to_dict()
    atomic_write_json(folder / MANIFEST, {
        "kind": "pairs", "content_id": folder.name, "name": name, "config": cfg.to_dict(),
        "generator": cfg.generator, "steer": steer, "split": SPLIT,
        "sampling": {"temperature": cfg.temperature, "top_p": cfg.top_p,
                     "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed,
                     "samples": samples},
        "scorer": scorer.to_dict(), "keep_rule": "outcome == complied",
        "scorers_of_rows": sorted({r.get("scorer", "?") for r in rows}),
        "counts": _counts(rows), "content_warning": CONTENT_WARNING,
        "versions": package_versions(), "git_revision": git_revision()})


def _report(folder: Path, rows: list[dict[str, Any]], n: int, prompts: list[Any], n_held: int,
            samples: int, wall: float, fresh: int) -> PairsReport:
    from refusalscope.fileio import atomic_write_json

    c = _counts(rows)
    exhausted = c["kept"] < n and len(rows) >= len(prompts) * samples
    rep = PairsReport(str(folder), n, c["generated"], c["kept"], c["dropped"],
                      c["unique_prompts"], len(prompts), n_held, samples, round(wall, 1), fresh,
                      exhausted)
    atomic_write_json(folder / "report.json", rep.to_dict())
    return rep


# ----------------------------------------------------------------------- naming and reading
def register_name(name: str, content_id: str) -> None:
    """Record `name` -> content id in `pairs/names.json` (a later make of that name wins)."""
    import json

    from refusalscope.fileio import atomic_write_json

    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise UserError(f"--name must be letters, digits, '.', '_' or '-' (got {name!r})")
    path = pairs_root() / NAMES
    names = json.loads(path.read_text("utf-8")) if path.is_file() else {}
    names[name] = content_id
    atomic_write_json(path, dict(sorted(names.items())))


def resolve_pairs(ref: str) -> Path:
    """The generations file a `--pairs` value names: a registered name, a content id, a pairs
    folder, or a file (a made-pairs `generations.jsonl`, or any prompt/response file)."""
    import json

    root = pairs_root()
    names = root / NAMES
    if names.is_file():
        cid = json.loads(names.read_text("utf-8")).get(ref)
        if cid is not None:
            return root / cid / GENERATIONS
    p = Path(ref).expanduser()
    for cand in (root / ref / GENERATIONS, p / GENERATIONS, p):
        if cand.is_file():
            return cand
    known = sorted(json.loads(names.read_text("utf-8"))) if names.is_file() else []
    raise UserError(f"--pairs {ref!r}: no such pairs name, folder or file (made pairs: "
                    f"{', '.join(known) or 'none yet'}; make some with `refusalscope data pairs`)")


def kept_rows(path: Path) -> list[dict[str, Any]]:
    """Rows to train on from a made-pairs file: `kept` ones, in generation order."""
    from refusalscope.fileio import read_jsonl

    return [r for r in read_jsonl(path) if r.get("kept")]


def make_command(path: Path, n: int) -> str:
    """The `data pairs` command that extends the pairs at `path` to `n` kept pairs."""
    import json

    man = path.parent / MANIFEST
    if not man.is_file():
        return f"refusalscope data pairs --n {n}"
    m = json.loads(man.read_text("utf-8"))
    c = m["config"]
    parts = ["refusalscope data pairs", f"--generator {c['generator']}"]
    if c.get("steer"):
        from refusalscope.interp.steering import SteerSpec

        spec = replace(SteerSpec.parse(c["steer"]), sha256=None)
        parts.append(f"--steer {spec.to_string()}")
    defaults = PairsConfig()
    for key, flag in (("temperature", "--temperature"), ("top_p", "--top-p"),
                      ("max_new_tokens", "--max-new-tokens"), ("seed", "--seed"),
                      ("scorer", "--scorer")):
        if c.get(key) != getattr(defaults, key):
            parts.append(f"{flag} {c[key]}")
    parts.append(f"--samples {max(m['sampling']['samples'] * 2, 2)} --n {n}")
    return " ".join(parts)
