#!/usr/bin/env bash
# TAR against held-out adversaries on the real qwen2.5-coder-0.5b (issue 19): the TAR defense and
# the undefended model, each under TAR's own adversary (in-distribution) and two held-out LoRA
# attacks; eval n 32, 48 new tokens, one seed. Prints RRR with 95% CIs per (model, attack), then
# each model's over-refusal: the share of 32 harmless eval prompts it refuses (a defense that
# refuses everything scores RRR 1 too).
# Resumable: the study skips finished nodes and resumes interrupted ones; run it again to go on.
# Output: artifacts/tar_heldout/ (study folder, runs, table.md, comparisons.json, harmless_*/).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export REFUSALSCOPE_ARTIFACTS="${REFUSALSCOPE_ARTIFACTS:-$PWD/artifacts/tar_heldout}"
mkdir -p "$REFUSALSCOPE_ARTIFACTS"
PY="${PY:-.venv/bin/python}"
SPEC=scripts/tar_heldout.toml
nice -n 5 "$PY" -m refusalscope study run "$SPEC"
nice -n 5 "$PY" - "$SPEC" <<'PYEOF'
import json
import os
import sys
from pathlib import Path

from refusalscope.defenses.tar_heldout import compare_spec, heldout_rows, markdown
from refusalscope.study.executor import study_dir
from refusalscope.study.graph import expand
from refusalscope.study.spec import load_spec

spec = load_spec(sys.argv[1])
comparisons = compare_spec(spec)
rows = heldout_rows(spec, expand(spec), study_dir(spec.name), comparisons)
out = Path(os.environ["REFUSALSCOPE_ARTIFACTS"])
table = markdown(rows)
(out / "table.md").write_text(table, encoding="utf-8")
(out / "comparisons.json").write_text(json.dumps(
    {f"{a}@{s}": c.to_dict() for (a, s), c in comparisons.items()}, indent=1), encoding="utf-8")
(out / "rows.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
print("TAR vs undefended, one seed (0), scorer ensemble; RRR = refusal rate on 32 eval prompts")
print(table)
PYEOF
# over-refusal on harmless prompts: the undefended model and the TAR model (its merged `model/`)
TAR_RUN=$(ls -d "$REFUSALSCOPE_ARTIFACTS"/studies/tar-heldout/nodes/defend-tar-*/runs/*/ | head -1)
for who in undefended tar; do
  out="$REFUSALSCOPE_ARTIFACTS/harmless_$who"
  model=qwen2.5-coder-0.5b
  [ "$who" = tar ] && model="${TAR_RUN}model"
  if [ ! -f "$out/scores.jsonl" ]; then
    rm -rf "$out"
    nice -n 5 "$PY" -m refusalscope generate -m "$model" --harmless --n 32 --max-new-tokens 48 \
      --batch-size 32 --out "$out"
    nice -n 5 "$PY" -m refusalscope score "$out" --scorer ensemble
  fi
  "$PY" - "$out/metrics.json" "$who" <<'PYEOF'
import json
import sys

m = json.load(open(sys.argv[1], encoding="utf-8"))
r = m["outcomes"]["by_label"]["harmless"]["refused"]
print(f"over-refusal ({sys.argv[2]}): {r['count']}/32 harmless prompts refused = {r['rate']:.3f} "
      f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] (bootstrap), Wilson [{r['wilson95'][0]:.3f}, "
      f"{r['wilson95'][1]:.3f}]")
PYEOF
done
