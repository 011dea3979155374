"""Training pairs for fine-tuning and optimisation attacks: harmful prompt -> compliant response.

Pairs come from the `attack-train` split (never `eval`): AdvBench rows carry a short compliant
target ("Sure, here is ..."). The pulled offline sources hold no full compliant responses, so
users supply those with a file of `prompt`, `response` columns (`load_pair_file`).

`encode_pair` applies the model's chat template and returns token ids with the length of the
prompt part; `collate` right-pads a batch and sets labels to -100 on prompt and padding, so the
loss is taken on response tokens only. GCG can reuse `load_pairs` for its (prompt, target) pairs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refusalscope.errors import UserError

IGNORE = -100
TARGET_KINDS = ("auto", "advbench-target", "full-response")


@dataclass(frozen=True)
class Pair:
    """One training example: a harmful prompt and the compliant reply to teach."""

    id: str
    prompt: str
    response: str
    source: str


def load_pairs(n: int, *, seed: int = 0, target_kind: str = "auto",
               data_file: str | None = None) -> list[Pair]:
    """The first `n` pairs after a shuffle seeded by `seed`; more than exist -> `UserError`.

    `target_kind`: ``advbench-target`` uses the `attack-train` split's AdvBench targets;
    ``full-response`` needs `data_file`; ``auto`` takes `data_file` if given, else the targets.

    Example:
        pairs = load_pairs(64, seed=0)  # 64 AdvBench (prompt, "Sure, here is ...") pairs
    """
    if target_kind not in TARGET_KINDS:
        raise UserError(f"unknown target kind {target_kind!r}: one of {', '.join(TARGET_KINDS)}")
    if data_file is not None and target_kind == "advbench-target":
        raise UserError("--data gives full responses: use --target-kind full-response or auto")
    if data_file is None and target_kind == "full-response":
        raise UserError("no full compliant responses exist in the offline sources: pass "
                        "--data FILE with prompt and response columns")
    if data_file is not None:
        pool, where = load_pair_file(data_file), data_file
    else:
        pool, where = _split_pairs(), "the attack-train split (AdvBench rows with a target)"
    if n > len(pool):
        raise UserError(f"--n-data {n} is more than the {len(pool)} pairs in {where}")
    order = sorted(pool, key=lambda p: p.id)
    random.Random(seed).shuffle(order)
    return order[:n]


def _split_pairs() -> list[Pair]:
    from refusalscope.data.load import load_split

    return [Pair(p.id, p.prompt, p.target, p.source)
            for p in load_split("attack-train") if p.target]


def load_pair_file(path: str | Path) -> list[Pair]:
    """Pairs from a CSV / JSONL / JSON / parquet file with `prompt` and `response` columns."""
    from refusalscope.data.userfile import read_records

    records, _, _ = read_records(path)
    missing = {"prompt", "response"} - set(records[0])
    if missing:
        raise UserError(f"{path} needs columns prompt and response (missing: "
                        f"{', '.join(sorted(missing))})")
    out = []
    for i, r in enumerate(records, start=1):
        prompt, response = str(r.get("prompt") or "").strip(), str(r.get("response") or "").strip()
        if not prompt or not response:
            raise UserError(f"{path} row {i}: empty prompt or response")
        out.append(Pair(str(r.get("id") or f"row{i}"), prompt, response, "user"))
    return out


def encode_pair(handle: Any, pair: Pair, max_len: int) -> tuple[list[int], int]:
    """(token ids of chat-formatted prompt + response + eos, number of prompt tokens).

    Over `max_len` tokens, the response keeps at most half the window and the prompt loses
    tokens from its start, so every example keeps response tokens to learn from.
    """
    tok = handle.tokenizer
    text = handle.format_prompt(pair.prompt)
    prompt_ids = tok(text, add_special_tokens=not handle.has_chat_template)["input_ids"]
    resp_ids = tok(pair.response, add_special_tokens=False)["input_ids"]
    if tok.eos_token_id is not None:
        resp_ids = resp_ids + [tok.eos_token_id]
    if len(prompt_ids) + len(resp_ids) > max_len:
        resp_ids = resp_ids[: max(max_len // 2, max_len - len(prompt_ids))]
        prompt_ids = prompt_ids[len(prompt_ids) - (max_len - len(resp_ids)):]
    return prompt_ids + resp_ids, len(prompt_ids)


def collate(encoded: list[tuple[list[int], int]], pad_id: int) -> dict[str, Any]:
    """Right-padded `input_ids`, `attention_mask`, `labels` (-100 on prompt and padding): [B, T]."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
    for i, (row, n_prompt) in enumerate(encoded):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, n_prompt: len(row)] = torch.tensor(row[n_prompt:])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
