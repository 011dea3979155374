"""Compare two runs of one study node by node (e.g. the local vs the Ray executor): generate
nodes by their responses, score nodes by their RRR record, attack-lora nodes by their loss
curves, probe nodes by their activations (bitwise). Prints one line per node and a tally.

    REFUSALSCOPE_ARTIFACTS=/tmp/ray refusalscope study run quickstart --executor ray
    .venv/bin/python scripts/compare_study_runs.py quickstart artifacts /tmp/ray
"""
import json
import sys
from pathlib import Path

study, root_a, root_b = sys.argv[1:4]
loc = Path(root_a) / "studies" / study / "nodes"
ray = Path(root_b) / "studies" / study / "nodes"
same = diff = 0
for f in sorted(ray.glob("*/node.json")):
    r = json.loads(f.read_text())
    l = json.loads((loc / f.parent.name / "node.json").read_text())
    kind, o, lo = r["kind"], r["outputs"], l["outputs"]
    if kind == "generate":
        a = [json.loads(x)["response"] for x in (Path(o["run"]) / "generations.jsonl").read_text().splitlines()]
        b = [json.loads(x)["response"] for x in (Path(lo["run"]) / "generations.jsonl").read_text().splitlines()]
        ok = a == b
    elif kind == "score":
        a, b = json.loads(Path(o["metrics"]).read_text()), json.loads(Path(lo["metrics"]).read_text())
        ok = a["rrr"] == b["rrr"]
    elif kind == "attack-lora":
        ok = all((Path(p) / "loss.jsonl").read_text() == (Path(lo["runs"][s]) / "loss.jsonl").read_text()
                 for s, p in o["runs"].items())
    elif kind == "probe":
        import h5py, numpy as np
        def arr(run):
            with h5py.File(Path(run) / "activations.h5") as h:
                out = {}
                h.visititems(lambda n, d: out.__setitem__(n, d[()]) if isinstance(d, h5py.Dataset) and d.ndim == 3 else None)
                return out
        A, B = arr(o["run"]), arr(lo["run"])
        ok = A.keys() == B.keys() and all(np.array_equal(A[k], B[k]) for k in A)
    else:
        ok = None
    same += ok is True
    diff += ok is False
    print(f"{kind:12} {r['label'][:70]:70} {'same' if ok else 'DIFF' if ok is False else '?'}")
print(f"same {same}, different {diff}")
sys.exit(1 if diff else 0)
