"""Join hand labels of *real* model responses (no text committed) with a study's generations.

Issue 16's hand-written sets (C, D, E, F) are written by people imitating model output; set G is
labelled on what the models actually said: the harmful eval responses of the `quickstart` study
(SmolLM2-135M and Qwen2.5-Coder 0.5B / 1.5B, baseline and LoRA-attacked, greedy, 64 new tokens).
Harmful generations stay under `artifacts/`, so the committed file
`benchmarks/data/real_outcomes_g.jsonl` holds only `{gid, prompt_id, response_sha256, models,
gold, note}`; this script finds each labelled response again in a study's `generations.jsonl`
files by (prompt id, sha256 of the response) and writes the joined rows (with text) under
`artifacts/` in the layout `benchmarks/dev_outcomes.py` and `refusalscope score --input` read
(`id`, `class` = gold, `prompt`, `response`, `gold`). Greedy decoding on the pinned stack gives
the same text on a rerun; a label whose response is not found (another machine, another scorer
order, a changed model) is counted and left out, never attached to other text.

    bash scripts/quickstart.sh      # once: the study whose responses were labelled
    .venv/bin/python benchmarks/real_outcomes.py
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/dev_outcomes.py \
        artifacts/real_outcomes_g.jsonl --variants own
    .venv/bin/refusalscope score --input artifacts/real_outcomes_g.jsonl --gold-col gold \
        --out artifacts/real_outcomes_g_scored
    .venv/bin/python benchmarks/real_outcomes.py \
        --scores ensemble=artifacts/real_outcomes_g_scored/scores.jsonl   # per-run table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generation_rows(folder: Path) -> Iterator[tuple[Path, dict[str, str], str]]:
    """(file, row, sha256 of the response) for every row of every `generations.jsonl` below
    `folder` (a study's generate nodes, or a folder of generate runs), files in sorted order."""
    for path in sorted(folder.rglob("generations.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                yield path, r, hashlib.sha256(r["response"].encode("utf-8")).hexdigest()


def generations(folder: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(prompt id, sha256 of response) -> the generation row, over `generation_rows(folder)`."""
    return {(r["id"], sha): r for _, r, sha in generation_rows(folder)}


def per_run(study: Path, labels: list[dict[str, str]], scores: dict[str, Path]) -> None:
    """Print, per generate run below `study`, the refused / complied / degenerate counts of its
    labelled responses by the human labels and by each scorer (`scores`: name -> the
    `scores.jsonl` of `refusalscope score --input` on the joined file, keyed by gid)."""
    gid = {(lab["prompt_id"], lab["response_sha256"]): lab["gid"] for lab in labels}
    gold = {lab["gid"]: lab["gold"] for lab in labels}
    outcome = {name: {r["id"]: r["outcome"] for r in map(json.loads, path.read_text(
        encoding="utf-8").splitlines())} for name, path in scores.items()}
    by_run: dict[Path, list[str]] = {}
    for path, r, sha in generation_rows(study):
        if (r["id"], sha) in gid:
            by_run.setdefault(path, []).append(gid[(r["id"], sha)])

    def counts(of: dict[str, str], ids: list[str]) -> str:
        c = [of.get(i) for i in ids]
        return " / ".join(str(c.count(o)) for o in ("refused", "complied", "degenerate"))

    print("| run | n | human | " + " | ".join(scores) + " |")
    print("|---|---|---|" + "---|" * len(scores))
    for path, ids in by_run.items():
        cells = [counts(gold, ids)] + [counts(outcome[name], ids) for name in scores]
        print(f"| {path.parent.name} | {len(ids)} | " + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=Path, default=ROOT / "benchmarks/data/real_outcomes_g.jsonl")
    ap.add_argument("--study", type=Path, default=ROOT / "artifacts/studies/quickstart",
                    help="a study, or any folder holding the generate runs that were labelled")
    ap.add_argument("--out", type=Path, default=ROOT / "artifacts/real_outcomes_g.jsonl")
    ap.add_argument("--scores", action="append", default=[], metavar="NAME=SCORES.JSONL",
                    help="also print per-run refused/complied/degenerate counts, human vs this "
                         "scorer (`score --input OUT` output); repeatable")
    a = ap.parse_args()
    if not a.study.is_dir() or not a.labels.is_file():
        print(f"error: no study at {a.study} (run `bash scripts/quickstart.sh` first)"
              if not a.study.is_dir() else f"error: no labels file {a.labels}", file=sys.stderr)
        raise SystemExit(2)
    gens = generations(a.study)
    labels = [json.loads(x) for x in a.labels.read_text(encoding="utf-8").splitlines() if x.strip()]
    rows, missing = [], []
    for lab in labels:
        g = gens.get((lab["prompt_id"], lab["response_sha256"]))
        if g is None:
            missing.append(lab["gid"])
            continue
        rows.append({"id": lab["gid"], "class": lab["gold"], "prompt": g["prompt"],
                     "response": g["response"], "gold": lab["gold"],
                     "models": lab["models"]})
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                     encoding="utf-8")
    print(f"{len(rows)} of {len(labels)} labelled responses found in {a.study} -> {a.out}")
    if missing:
        print(f"not found (text differs or run absent): {len(missing)}: {' '.join(missing[:20])}")
    if a.scores:
        bad = [s for s in a.scores if "=" not in s or not Path(s.split("=", 1)[1]).is_file()]
        if bad:
            print(f"error: --scores wants NAME=PATH to a scores.jsonl: {bad[0]}", file=sys.stderr)
            raise SystemExit(2)
        per_run(a.study, labels, {k: Path(v) for k, v in (s.split("=", 1) for s in a.scores)})


if __name__ == "__main__":
    main()
