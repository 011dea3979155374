"""Make a blind labelling task from real generations, and turn its labels into a hash-only file.

How sets G and H were made (issue 16; `benchmarks/data/README.md`):

1. `sample`: every distinct (request, response) of the harmful rows of the `generations.jsonl` files
   below `--study` goes, shuffled (seeded) and without model or run names, into
   `<out>/to_label.jsonl` as `{gid, request, response}`; `<out>/key.json` keeps, per gid, where each
   copy came from. Both stay outside the repository (they hold harmful text).
2. A labeller reads `to_label.jsonl` and writes `{gid, gold, note}` per row (gold: refused /
   complied / degenerate; note <= 10 words, no operational content).
3. `commit`: joins the labels with `key.json` into `benchmarks/data/real_outcomes_<letter>.jsonl`:
   `{gid, prompt_id, response_sha256, models, n_runs, gold, note}` — no text.
   `benchmarks/real_outcomes.py` joins that file with the generations again to score it.

    .venv/bin/python benchmarks/real_outcomes_sample.py sample --study artifacts/real_h \\
        --prefix h --out /work/seth
    .venv/bin/python benchmarks/real_outcomes_sample.py commit --out /work/seth --letter h
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from real_outcomes import generation_rows

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("refused", "complied", "degenerate")


def sample(study: Path, prefix: str, out: Path, seed: int) -> None:
    items: dict[tuple[str, str], list[dict[str, str]]] = {}
    for path, r, sha in generation_rows(study):
        if r.get("label") == "harmful":
            items.setdefault((r["prompt"], r["response"]), []).append({
                "run": path.parent.name, "prompt_id": r["id"], "model": r["model"],
                "response_sha256": sha})
    keys = list(items)
    random.Random(seed).shuffle(keys)
    out.mkdir(parents=True, exist_ok=True)
    gids = [f"{prefix}-{i:03d}" for i in range(1, len(keys) + 1)]
    (out / "to_label.jsonl").write_text("".join(
        json.dumps({"gid": g, "request": p, "response": r}, ensure_ascii=False) + "\n"
        for g, (p, r) in zip(gids, keys, strict=True)), encoding="utf-8")
    (out / "key.json").write_text(json.dumps(dict(zip(gids, (items[k] for k in keys),
                                                      strict=True)), indent=0))
    print(f"{sum(map(len, items.values()))} responses, {len(keys)} distinct -> "
          f"{out / 'to_label.jsonl'}")


def commit(out: Path, letter: str) -> None:
    missing = [f for f in ("key.json", "labels.jsonl") if not (out / f).is_file()]
    if missing:
        print(f"error: {out / missing[0]} not found (run `sample`, then label)", file=sys.stderr)
        raise SystemExit(2)
    key = json.loads((out / "key.json").read_text())
    labels = [json.loads(x) for x in (out / "labels.jsonl").read_text().splitlines() if x.strip()]
    if sorted(lab["gid"] for lab in labels) != sorted(key):
        print("error: labels.jsonl must hold one label for each gid of key.json", file=sys.stderr)
        raise SystemExit(2)
    rows = []
    for lab in labels:
        copies = key[lab["gid"]]
        if lab["gold"] not in LABELS or len(lab["note"].split()) > 10:
            print(f"error: {lab['gid']}: gold must be one of {LABELS}, note <= 10 words",
                  file=sys.stderr)
            raise SystemExit(2)
        rows.append({"gid": lab["gid"], "prompt_id": copies[0]["prompt_id"],
                     "response_sha256": copies[0]["response_sha256"],
                     "models": sorted({c["model"] for c in copies}), "n_runs": len(copies),
                     "gold": lab["gold"], "note": lab["note"]})
    path = ROOT / "benchmarks" / "data" / f"real_outcomes_{letter}.jsonl"
    if path.exists():
        print(f"error: {path} exists; finished labels are never overwritten", file=sys.stderr)
        raise SystemExit(2)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    print(f"{len(rows)} labels -> {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--study", type=Path, required=True)
    s.add_argument("--prefix", required=True, help="gid prefix, e.g. the set's letter")
    s.add_argument("--out", type=Path, required=True, help="outside the repository")
    s.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("commit")
    c.add_argument("--out", type=Path, required=True, help="the folder `sample` wrote")
    c.add_argument("--letter", required=True)
    a = ap.parse_args()
    if a.cmd == "sample":
        sample(a.study, a.prefix, a.out, a.seed)
    else:
        commit(a.out, a.letter)


if __name__ == "__main__":
    main()
