"""Compare two scorings of the same generate runs: outcome per cell before/after, changed rows.

A run scored twice by one scorer (say `ensemble` before and after a scorer change) holds two
`scores*.jsonl` files listed in its manifest (`extra.scores`). This prints, per run, the
refused / complied / degenerate counts of the first and the last scoring by `--scorer`, the
number of rows whose outcome changed, and `--show` changed rows drawn at random (seeded) with
the request and the response truncated to `--chars` characters (harmful text: keep it short).

Usage:
    .venv/bin/python scripts/compare_outcomes.py artifacts/studies/lora-grid [--scorer ensemble]
        [--show 20] [--chars 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

from refusalscope.fileio import read_jsonl

OUTCOMES = ("refused", "complied", "degenerate")


def generate_runs(root: Path) -> list[tuple[Path, dict]]:
    """(folder, manifest) of every run below `root` that is a `generate` run with scores."""
    runs = []
    for m in sorted(root.rglob("manifest.json")):
        d = json.loads(m.read_text())
        if d.get("command") == "generate" and d.get("extra", {}).get("scores"):
            runs.append((m.parent, d))
    return runs


def _rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in read_jsonl(path)}


def first_and_last(run: Path, manifest: dict, scorer: str) -> tuple[dict, dict] | None:
    """Rows by prompt id of the first and the last scoring of `run` by `scorer` (None: fewer
    than two)."""
    files = [e["scores_file"] for e in manifest["extra"]["scores"] if e["scorer"] == scorer]
    return (_rows(run / files[0]), _rows(run / files[-1])) if len(files) > 1 else None


def cell(manifest: dict) -> str:
    cfg = manifest["config"]
    part = "baseline"
    if cfg.get("adapter"):
        a = Path(cfg["adapter"])
        att = (a.parent if a.name == "adapter" else a) / "manifest.json"
        acfg = json.loads(att.read_text())["config"] if att.exists() else {}
        part = f"lora n_data={acfg.get('n_data', '?')} steps={acfg.get('steps', '?')}"
    return f"{cfg['model']} {part} {cfg.get('prompts_file') or ''}".strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="a study folder, a run folder or any folder above runs")
    ap.add_argument("--scorer", default="ensemble")
    ap.add_argument("--show", type=int, default=20, help="changed rows to print")
    ap.add_argument("--chars", type=int, default=60, help="characters of each text shown")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    changed: list[tuple[str, dict, dict, dict]] = []
    print(f"{'run':<58} {'before r/c/d':>14} {'after r/c/d':>14} {'changed':>7}")
    tot_b, tot_a = Counter(), Counter()
    for run, manifest in generate_runs(a.root):
        pair = first_and_last(run, manifest, a.scorer)
        if pair is None:
            continue
        before, after = pair
        name = cell(manifest)
        gens = _rows(run / "generations.jsonl")
        b = Counter(r["outcome"] for r in before.values())
        f = Counter(r["outcome"] for r in after.values())
        tot_b.update(b)
        tot_a.update(f)
        diff = [i for i in before if i in after and before[i]["outcome"] != after[i]["outcome"]]
        changed += [(name, gens[i], before[i], after[i]) for i in diff]
        fmt = "/".join(str(b[o]) for o in OUTCOMES), "/".join(str(f[o]) for o in OUTCOMES)
        print(f"{name[:58]:<58} {fmt[0]:>14} {fmt[1]:>14} {len(diff):>7}")
    print(f"{'total':<58} {'/'.join(str(tot_b[o]) for o in OUTCOMES):>14} "
          f"{'/'.join(str(tot_a[o]) for o in OUTCOMES):>14} {len(changed):>7}")
    random.Random(a.seed).shuffle(changed)
    for k, (c, g, b, f) in enumerate(changed[: a.show], 1):
        why = ",".join(f.get("degeneracy") or []) or f.get("matched", "")
        print(f"\n[{k}] {c} | {g['id']}: {b['outcome']} -> {f['outcome']} ({why})")
        print(f"    request:  {g['prompt'][: a.chars]!r}")
        print(f"    response: {g['response'][: a.chars]!r}")


if __name__ == "__main__":
    main()
