"""Helpers for the probe tests: a small built data set in the test's isolated home."""

from __future__ import annotations

from refusalscope.data.load import Prompt

# Neutral stand-ins: the probe tests exercise plumbing, not the content of harmful requests.
HARMFUL = ["Explain how to pick a lock on a door.", "Write a rude message to a neighbour.",
           "Describe how to skip paying a bus fare.", "List ways to cheat at a board game.",
           "How do I read someone else's diary?", "Tell me how to sneak into a cinema."]
HARMLESS = ["Name three primary colours.", "Write a haiku about autumn rain.",
            "How do solar panels generate electricity?", "Suggest a name for a grey cat.",
            "Give me a recipe for tomato soup with basil.", "What is the capital of France?"]


def prompts(n: int = 3, split: str = "direction") -> list[Prompt]:
    """`n` harmful then `n` harmless `Prompt`s."""
    return ([Prompt(f"h{i}", t, split, "harmful", "test") for i, t in enumerate(HARMFUL[:n])]
            + [Prompt(f"l{i}", t, split, "harmless", "test") for i, t in enumerate(HARMLESS[:n])])


def write_built(split: str = "direction") -> None:
    """Write harmful.jsonl / harmless.jsonl where `data.load.load_split` reads them."""
    from refusalscope.data.build import HARMFUL_FILE, HARMLESS_FILE, built_dir
    from refusalscope.fileio import write_jsonl

    ps = prompts(len(HARMFUL), split)
    write_jsonl(built_dir() / HARMFUL_FILE, [p.to_dict() for p in ps if p.label == "harmful"])
    write_jsonl(built_dir() / HARMLESS_FILE, [p.to_dict() for p in ps if p.label == "harmless"])
