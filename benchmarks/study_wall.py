"""Wall time of a study run, from its nodes' attempt logs (`nodes/*/attempts.jsonl`).

Prints the first node start, the last node end, the wall time between them, and the sum of
the nodes' own start-to-end times (equal to the wall time when nodes ran one after another).

    .venv/bin/python benchmarks/study_wall.py artifacts/studies/lora-grid
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, help="a study folder (holds nodes/)")
    folder = ap.parse_args().study
    starts, ends, busy = [], [], timedelta()
    for log in sorted(folder.glob("nodes/*/attempts.jsonl")):
        events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        t0 = None
        for e in events:
            at = datetime.fromisoformat(e["at"])
            if e["event"] == "start":
                t0 = at
                starts.append(at)
            elif e["event"] == "end" and t0 is not None:
                ends.append(at)
                busy += at - t0
                t0 = None
    if not starts or not ends:
        raise SystemExit(f"error: no node attempts under {folder}/nodes")
    print(f"{len(starts)} node attempts; first start {min(starts):%Y-%m-%d %H:%M:%S}, "
          f"last end {max(ends):%Y-%m-%d %H:%M:%S} UTC")
    print(f"sum of node times: {busy}")
    print(f"wall: {max(ends) - min(starts)}")


if __name__ == "__main__":
    main()
