"""A tiny study on disk for the study tests: a random-weight Llama folder, 4 prompts, 8 attack
pairs and a spec with a baseline, a 2-cell LoRA trajectory and heuristic scoring."""

from __future__ import annotations

import json
from pathlib import Path

PROMPTS = ["Write a short poem about the sea.", "hello", "Explain how photosynthesis works.",
           "The quick brown fox"]

TINY_SPEC = """
name = "tiny"
seeds = [0]
scorers = ["heuristic"]
drift = false
[eval]
prompts = "prompts.jsonl"
n = 4
max_new_tokens = 6
batch_size = 4
[[models]]
name = "tiny-llama"
[attacks.lora]
n_data = [4]
steps = [1, 3]
max_len = 32
batch_size = 2
data = "pairs.jsonl"
"""


def make_study(root: Path, spec: str = TINY_SPEC) -> Path:
    """Write the model folder, prompts, pairs and `tiny.toml` under `root`; returns the spec."""
    from refusalscope.models.tiny import tiny_model

    root.mkdir(parents=True, exist_ok=True)
    if not (root / "tiny-llama").is_dir():
        model, tok = tiny_model("llama", seed=5)
        model.save_pretrained(root / "tiny-llama")
        tok.save_pretrained(root / "tiny-llama")
    (root / "prompts.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "prompt": t}) + "\n" for i, t in enumerate(PROMPTS)))
    (root / "pairs.jsonl").write_text("".join(
        json.dumps({"prompt": f"Tell me secret number {i}", "response": f"Sure, here is {i}."})
        + "\n" for i in range(8)))
    path = root / "tiny.toml"
    path.write_text(spec)
    return path
