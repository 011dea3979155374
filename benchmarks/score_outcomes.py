"""Issue 16 acceptance: outcome accuracy per held-out class, old scorer and new side by side.

The held-out set (`refusalscope.scoring.heldout`): the PyRIT human-labelled rows listed in
`resources/heldout_pyrit_ids.json` (pulled from the `pyrit==1.1.0` wheel at run time, never
committed; classes `pyrit_refusal`, `pyrit_compliance`) and the hand-written rows of
`resources/heldout_outcomes_c.jsonl` (set C: plain_refusal, moralising, partial_refusal,
off_topic, error_text, compliance, partial_compliance, sympathetic_compliance; 36 each). They are written as one CSV under `<artifacts>/score_outcomes/` with
columns id, class, source, prompt, response, gold (refused / complied / degenerate), v2_trained.

- **old**: the code at commit 7019d55 with classifier `minilm-refusal-v2`, run from a git
  worktree of that commit (`PYTHONPATH=<tree>`, same venv): `score_file` with the ensemble,
  exactly what `score --input F --scorer ensemble --classifier minilm-refusal-v2` did there.
- **new**: the working tree's CLI, `refusalscope score --input F --scorer ensemble --gold-col
  gold` with its default classifier (or `--classifier`).

Printed per class: n, the accuracy of `outcome != complied` against `gold != complied` (the
acceptance number) and the 3-way outcome accuracy, old and new; then overall. A fourth outcome
`off_topic`, if a scorer emits one, counts as `degenerate`. Responses are never printed.

    git worktree add --detach /tmp/old-7019d55 7019d55      # once
    # once per machine: the old classifier, trained by the old code (9.6 min wall on 2 cores;
    # run from outside the repository so the old tree's package is the one imported)
    mkdir -p /tmp/rs-old
    git -C /tmp/old-7019d55 archive HEAD refusalscope cli | tar -x -C /tmp/rs-old
    mv /tmp/rs-old/cli /tmp/rs-old/refusalscope/cli
    (cd /tmp && PYTHONPATH=/tmp/rs-old $OLDPWD/.venv/bin/python -c \
        "from refusalscope.cli.app import main; main()" score train-classifier)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/score_outcomes.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/score_outcomes.py --only new   # after retraining
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

OLD_COMMIT = "7019d55"
OLD_CLASSIFIER = "minilm-refusal-v2"
CLASS_ORDER = ("pyrit_refusal", "pyrit_compliance", "plain_refusal", "compliance",
               "sympathetic_compliance", "moralising", "off_topic", "error_text",
               "partial_refusal", "partial_compliance")
# Run inside the old tree: the same call the old CLI made for `--scorer ensemble`.
OLD_SNIPPET = """
import json, sys
import refusalscope
assert refusalscope.__file__.startswith(sys.argv[3]), refusalscope.__file__
from refusalscope.scoring import HeuristicScorer, score_file
from refusalscope.scoring.classifier import load_classifier
from refusalscope.scoring.ensemble import EnsembleScorer
res = score_file(sys.argv[1], EnsembleScorer(load_classifier(sys.argv[2]), HeuristicScorer()),
                 label_col=None, default_label="harmful")
print(json.dumps({"scores": str(res.scores_path), "version": res.metrics["scorer"]["version"]}))
"""


def build_mixed(out_dir: Path, hand: Path, pyrit: bool = True) -> Path:
    """Write the held-out rows (hand-written rows of `hand`, + PyRIT pulled now unless not
    `pyrit`) as one CSV; return its path."""
    from refusalscope.fileio import atomic_write_text
    from refusalscope.scoring.heldout import (handwritten_rows, pyrit_heldout_rows,
                                              response_hash, v2_trained_hashes)

    rows = (pyrit_heldout_rows() if pyrit else []) + handwritten_rows(hand)
    trained = v2_trained_hashes()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "class", "source", "prompt", "response", "gold", "v2_trained"])
    for r in rows:
        w.writerow([r.id, r.cls, r.source, r.request, r.response, r.gold,
                    int(r.source.startswith("pyrit") and response_hash(r.response) in trained)])
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "heldout_mixed.csv"
    atomic_write_text(path, buf.getvalue())
    return path


def _env(artifacts: Path, pythonpath: str | None = None) -> dict[str, str]:
    env = {**os.environ, "REFUSALSCOPE_ARTIFACTS": str(artifacts),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("PYTHONPATH", None)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def run_old(path: Path, tree: Path, classifier: str, out_dir: Path) -> dict[str, Any]:
    """Score with the old tree's ensemble; returns {"version", "outcomes": {id: outcome}}."""
    if not (tree / "refusalscope" / "__init__.py").is_file():
        sys.exit(f"no old tree at {tree}: git worktree add --detach {tree} {OLD_COMMIT}")
    proc = subprocess.run([sys.executable, "-c", OLD_SNIPPET, str(path), classifier,
                           str(tree.resolve())], capture_output=True, text=True,
                          env=_env(out_dir / "old", str(tree.resolve())), cwd=tree)
    if proc.returncode:
        sys.exit(f"old scorer failed:\n{proc.stderr[-2000:]}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"version": info["version"], "outcomes": _outcomes(Path(info["scores"]))}


def run_new(path: Path, classifier: str | None, scorer: str, out_dir: Path,
            cli: str | None = None, confirm: list[str] | None = None) -> dict[str, Any]:
    """Score with the working tree's CLI (or `cli`, a command line) and `--gold-col gold`;
    keeps the CLI's accuracy lines."""
    prefix = cli.split() if cli else [str(Path(sys.executable).parent / "refusalscope")]
    cmd = [*prefix, "score", "--input", str(path), "--scorer", scorer, "--gold-col", "gold",
           "--n-boot", "1000"] + (["--classifier", classifier] if classifier else []) \
        + (confirm or [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env={
        **_env(out_dir / "new"), "COLUMNS": "200"})
    if proc.returncode:
        sys.exit(f"new scorer failed ({' '.join(cmd[1:])}):\n{(proc.stdout + proc.stderr)[-2000:]}")
    lines = proc.stdout.splitlines()
    scores = next(ln.split("wrote ", 1)[1].split(" and ")[0] for ln in lines
                  if ln.startswith("wrote "))
    metrics = json.loads(Path(scores).with_name(
        Path(scores).name.replace("scores", "metrics").replace(".jsonl", ".json")).read_text())
    cli_lines = [ln for ln in lines if ln.startswith(("outcome:", "  gold ", "second stage"))]
    return {"version": metrics["scorer"]["version"], "outcomes": _outcomes(Path(scores)),
            "cli_lines": cli_lines,
            "command": " ".join(["refusalscope", *cmd[len(prefix):]]),
            "outcome_accuracy": metrics.get("outcome_accuracy")}


def _outcomes(scores: Path) -> dict[str, str]:
    rows = [json.loads(x) for x in scores.read_text().splitlines() if x.strip()]
    return {str(r["id"]): "degenerate" if r["outcome"] == "off_topic" else r["outcome"]
            for r in rows}


def per_class(rows: list[dict[str, str]], pred: dict[str, str]) -> dict[str, dict[str, Any]]:
    """{class: {n, not_complied, three_way, predicted: {outcome: count}}}, plus 'all'."""
    groups: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        groups.setdefault(r["class"], []).append(r)
        if r["class"].startswith("pyrit") and r["v2_trained"] == "0":
            groups.setdefault(f"{r['class']}, v2-unseen only", []).append(r)
    groups["all"] = rows
    out = {}
    for cls, rs in groups.items():
        got = [pred[r["id"]] for r in rs]
        nc = sum((g == "complied") == (r["gold"] == "complied") for r, g in zip(rs, got))
        three = sum(g == r["gold"] for r, g in zip(rs, got))
        out[cls] = {"n": len(rs), "gold": sorted({r["gold"] for r in rs}),
                    "not_complied": nc / len(rs), "not_complied_correct": nc,
                    "three_way": three / len(rs),
                    "predicted": {o: got.count(o) for o in ("refused", "complied", "degenerate")}}
    return out


def print_table(res: dict[str, dict[str, Any]], sources: dict[str, str]) -> None:
    names = list(res)
    order = [c for c in (*[x for c in CLASS_ORDER for x in (c, f"{c}, v2-unseen only")], "all")
             if any(c in res[n] for n in names)]
    head = "| class | source | n | gold | " + " | ".join(
        f"{n}: != complied | {n}: 3-way" for n in names) + " |"
    print(head)
    print("|" + "---|" * (4 + 2 * len(names)))
    for c in order:
        first = next(res[n][c] for n in names if c in res[n])
        cells = []
        for n in names:
            m = res[n].get(c)
            cells += ([f"{m['not_complied']:.3f} ({m['not_complied_correct']}/{m['n']})",
                       f"{m['three_way']:.3f}"] if m else ["-", "-"])
        print(f"| {c} | {sources.get(c, 'all')} | {first['n']} | {','.join(first['gold'])} | "
              + " | ".join(cells) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("old", "new"), default=None)
    ap.add_argument("--old-tree", type=Path, default=Path(f"/tmp/old-{OLD_COMMIT}"))
    ap.add_argument("--old-classifier", default=OLD_CLASSIFIER)
    ap.add_argument("--classifier", default=None, help="new: classifier (default: the CLI's)")
    ap.add_argument("--scorer", default="ensemble", help="new: --scorer for the CLI")
    ap.add_argument("--confirm", default=None,
                    help="new: a second stage (`score --confirm`), e.g. local:qwen2.5-coder-0.5b")
    ap.add_argument("--confirm-method", default="pmi", help="new: `score --confirm-method`")
    ap.add_argument("--confirm-scope", default="disputed", help="new: `score --confirm-scope`")
    ap.add_argument("--cli", default=None,
                    help="new: the command that runs the CLI [default: this venv's refusalscope]")
    ap.add_argument("--set", type=Path, default=None, dest="hand",
                    help="hand-written held-out rows in set C's format [default: set C], e.g. "
                         "benchmarks/data/heldout_outcomes_i.jsonl")
    ap.add_argument("--no-pyrit", action="store_true", help="leave out the PyRIT rows")
    ap.add_argument("--out", type=Path, default=None,
                    help="CSV, runs and results go here [default: <artifacts>/score_outcomes]")
    args = ap.parse_args()

    from refusalscope.paths import artifacts_dir
    from refusalscope.scoring.heldout import HANDWRITTEN_FILE

    out_dir = (args.out or artifacts_dir() / "score_outcomes").resolve()
    hand = args.hand or HANDWRITTEN_FILE
    if not hand.is_file():
        print(f"error: no such file: {hand}", file=sys.stderr)
        sys.exit(2)
    path = build_mixed(out_dir, hand, not args.no_pyrit)
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    sources = {}
    for r in rows:
        kind = f"hand-written ({hand.name})" if r["source"] == "handwritten" \
            else "PyRIT pyrit==1.1.0 human labels"
        sources[r["class"]] = kind
    sources.update({f"{c}, v2-unseen only": sources[c] for c in list(sources)})
    print(f"held-out file: {path} ({len(rows)} rows)")
    runs: dict[str, dict[str, Any]] = {}
    if args.only in (None, "old"):
        runs["old"] = run_old(path, args.old_tree, args.old_classifier, out_dir)
    if args.only in (None, "new"):
        confirm = ["--confirm", args.confirm, "--confirm-method", args.confirm_method,
                   "--confirm-scope", args.confirm_scope] \
            if args.confirm else None
        runs["new"] = run_new(path, args.classifier, args.scorer, out_dir, args.cli, confirm)
    res = {name: per_class(rows, r["outcomes"]) for name, r in runs.items()}
    for name, r in runs.items():
        print(f"{name}: {r['version']}")
    print_table(res, sources)
    if "new" in runs:
        print("\nnew, as the CLI prints it:")
        print("\n".join(runs["new"]["cli_lines"]))
        print(f"reproduce: {runs['new']['command']}")
    results = out_dir / f"results_{'_'.join(runs)}.json"
    from refusalscope.fileio import atomic_write_json

    atomic_write_json(results, {"file": str(path), "sources": sources,
                                "scorers": {n: {k: v for k, v in r.items() if k != "outcomes"}
                                            for n, r in runs.items()},
                                "per_class": res})
    print(f"wrote {results}")


if __name__ == "__main__":
    main()
