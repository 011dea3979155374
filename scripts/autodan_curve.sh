#!/usr/bin/env bash
# AutoDAN-HGA's loss curve on the real qwen2.5-coder-0.5b (issue 19): early stopping off, so
# every generation runs; prints the best and mean target loss per generation (generation 0 is
# the starting population) from the run's autodan.jsonl. Small settings for a shared 2-core CPU.
# Resumable: run it again and it continues the newest unfinished run (--resume).
# Output: artifacts/autodan_curve/ (the run folder, curve.tsv).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
export REFUSALSCOPE_ARTIFACTS="${REFUSALSCOPE_ARTIFACTS:-$PWD/artifacts/autodan_curve}"
PY="${PY:-.venv/bin/python}"
mkdir -p "$REFUSALSCOPE_ARTIFACTS"
POPULATION="${POPULATION:-16}"
GENERATIONS="${GENERATIONS:-8}"
N_EVAL="${N_EVAL:-16}"
last=$(ls -d "$REFUSALSCOPE_ARTIFACTS"/runs/*attack-autodan* 2>/dev/null | tail -n 1 || true)
if [[ -n "$last" ]] && ! grep -q '"status": "success"' "$last/manifest.json"; then
  nice -n 5 "$PY" -m refusalscope attack autodan --resume "$last"
else
  nice -n 5 "$PY" -m refusalscope attack autodan -m qwen2.5-coder-0.5b \
    --no-early-stop --population "$POPULATION" --generations "$GENERATIONS" \
    --eval-n "$N_EVAL" --max-new-tokens 48 --seed 0
fi
run=$(ls -d "$REFUSALSCOPE_ARTIFACTS"/runs/*attack-autodan* | tail -n 1)
"$PY" - "$run" <<'PYEOF'
import json
import sys
from pathlib import Path

run = Path(sys.argv[1])
rows = [json.loads(x) for x in (run / "autodan.jsonl").read_text().splitlines() if x.strip()]
lines = ["generation\tbest_loss\tmean_loss\ttarget_hit\twall_s"]
lines += [f"{r['generation']}\t{r['best_loss']:.4f}\t{r['mean_loss']:.4f}\t{r['target_hit']}\t"
          f"{r['wall_s']:.0f}" for r in rows]
(run.parent.parent / "curve.tsv").write_text("\n".join(lines) + "\n")
print(run)
print("\n".join(lines))
PYEOF
