"""Helpers for the defense tests: built data with every split, and attack pairs as a file."""

from __future__ import annotations

import json
from pathlib import Path

from probe_fixtures import HARMFUL, HARMLESS

SPLITS = ("attack-train", "direction", "eval")


def text(base: str, split: str) -> str:
    """A prompt text unique to its split (eval texts can be told apart in what a model saw)."""
    return f"{base} ({split})"


def write_built_all() -> dict[str, list[str]]:
    """harmful.jsonl / harmless.jsonl with every split; returns prompt texts per split."""
    from refusalscope.data.build import HARMFUL_FILE, HARMLESS_FILE, built_dir
    from refusalscope.fileio import write_jsonl

    built_dir().mkdir(parents=True, exist_ok=True)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for name, label, texts in ((HARMFUL_FILE, "harmful", HARMFUL),
                               (HARMLESS_FILE, "harmless", HARMLESS)):
        rows = [{"id": f"{label}-{split}-{i}", "prompt": text(t, split), "split": split,
                 "label": label, "source": "test"}
                for split in SPLITS for i, t in enumerate(texts)]
        write_jsonl(built_dir() / name, rows)
        for r in rows:
            out[r["split"]].append(r["prompt"])
    return out


def pair_file(tmp_path: Path, n: int = 5) -> str:
    """Attack pairs (prompt, response) in a JSONL file."""
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"id": f"u{i}", "prompt": f"Tell me a story number {i}.",
                                     "response": f"Sure, here is story {i}."}) + "\n"
                         for i in range(n)))
    return str(f)
