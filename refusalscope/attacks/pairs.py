"""Training pairs for fine-tuning and optimisation attacks: harmful prompt -> compliant response.

Two offline pools, neither touching `eval`:
* AdvBench rows of the `attack-train` split carry a short compliant target ("Sure, here is ...").
  Trained on those alone, a model learns to repeat the sentence rather than to comply.
* Full compliant responses: PyRIT's objective scorer evals (`pyrit==1.1.0`) hold responses to
  harmful objectives that human raters marked as achieving the objective (score 1); 191 rows,
  files pinned by sha256, objectives equal to an `eval` prompt (normalised text) dropped.
Users can bring their own full responses in a file of `prompt`, `response` columns, or make
any number with `refusalscope data pairs` (`data.pairgen`): a made-pairs file passed as
`data_file` trains on its kept (`complied`) rows, in generation order.

Every pool, whatever its source, goes through `data.holdout.HeldOut`: a pair whose prompt is an
exact or near duplicate (the data build's word-set Jaccard rule and threshold) of an `eval` or
`direction` prompt is never trained on.

`encode_pair` applies the model's chat template and returns token ids with the length of the
prompt part; `collate` right-pads a batch and sets labels to -100 on prompt and padding, so the
loss is taken on response tokens only. GCG can reuse `load_pairs` for its (prompt, target) pairs.
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refusalscope.errors import UserError

if TYPE_CHECKING:
    from refusalscope.models.handle import ModelHandle

IGNORE = -100
TARGET_KINDS = ("auto", "advbench-target", "full-response")
PYRIT = "pyrit==1.1.0"
_OBJECTIVE_DIR = "pyrit/datasets/scorer_evals/objective/"
_OBJECTIVE_SHA256 = {
    "bias.csv": "be11ab70e918ddc1b88ef43496df2e1336ec63527f56094c2db42ab0fb490980",
    "chemical_biological.csv": "1f6d092b50dfc90cf95608372b70737a27ff786ee4c09f4549c63e374c1e4a38",
    "exploits.csv": "315f4220f8533059b7d1ee86a492fb348e860e7f5e5fe17190c87b5736a2dc27",
    "harassment_bullying.csv": "ce8814ccc30ce1556bc191daaf597845fa2ab569561cb14076f09bb6d3dfdcce",
    "hate_speech.csv": "9572e1072e228ca50af0ed27faca07cb8b7ac03a6ba5ef905988b41f87ebdb24",
    "info_integrity.csv": "ae8537d73d7a627cdd2a6837c364d434d7e819188b157b935efdb09e65e7df2e",
    "misinformation.csv": "4a2e81aff9a0f2c6305d156b15e7ac344e77192f85c17d7ec59495ad701015be",
    "phishing.csv": "573f09da2265ec886b173d1cd0574943dd6cdfad2859b10daccd2d990f16e35d",
    "privacy.csv": "a115b3df4c812d95f358d8afa628243ff137a5051f2399ca89eb4bd866e20946",
    "self_harm.csv": "e8a36cdbd420650a0213798a869848f55c4c31cc6000f30bc78c4b37f96c0f8f",
    "sexual.csv": "b619f60677b3a941f34992914fdd06c26a49116bce9305bebab3fca7b0b06c8b",
    "violence.csv": "298d191a992d506439aa5150f58e8c1d1bd6b89f2bc501c66f4e5abf498debe2",
}  # cyber.csv and illegal_activity.csv hold no score-1 rows


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

    `target_kind`: ``advbench-target``: AdvBench targets of `attack-train`; ``full-response``:
    `data_file` if given, else PyRIT's human-rated full compliant responses; ``auto``:
    `data_file` if given, else the full responses first, then AdvBench targets (each pool
    shuffled on its own), so small `n` trains on full responses only.

    Example:
        pairs = load_pairs(64, seed=0)  # 64 full compliant responses (PyRIT scorer evals)
    """
    if target_kind not in TARGET_KINDS:
        raise UserError(f"unknown target kind {target_kind!r}: one of {', '.join(TARGET_KINDS)}")
    if data_file is not None and target_kind == "advbench-target":
        raise UserError("--data gives full responses: use --target-kind full-response or auto")
    if data_file is not None:
        pools, where = [load_pair_file(data_file)], data_file
    elif target_kind == "advbench-target":
        pools, where = [_split_pairs()], "the attack-train split (AdvBench rows with a target)"
    elif target_kind == "full-response":
        pools, where = [pyrit_full_responses()], "the full compliant responses (PyRIT)"
    else:
        pools = [pyrit_full_responses(), _split_pairs()]
        where = "the full responses (PyRIT) and AdvBench targets of attack-train together"
    from refusalscope.data.holdout import HeldOut

    held = HeldOut.from_built()
    pools = [held.filter(pool, lambda p: p.prompt)[0] for pool in pools]
    total = sum(len(p) for p in pools)
    if n > total:
        raise UserError(f"--n-data {n} is more than the {total} pairs in {where}; "
                        f"make more with `{_more_command(data_file, n)}`")
    if data_file is not None and is_made_pairs(data_file):
        return pools[0][:n]  # generation order: a grown file keeps every cell's data
    out: list[Pair] = []
    for pool in pools:
        order = sorted(pool, key=lambda p: p.id)
        random.Random(seed).shuffle(order)
        out.extend(order)
    return out[:n]


def _more_command(data_file: str | None, n: int) -> str:
    """The `data pairs` command that makes `n` pairs (extending `data_file` if it is made)."""
    from refusalscope.data.pairgen import make_command

    if data_file is not None and is_made_pairs(data_file):
        return make_command(Path(data_file), n) + "` and pass `--pairs " + str(data_file)
    return (f"refusalscope data pairs --steer ablate:DIRS.h5 --n {n}` (DIRS.h5 from "
            "`refusalscope probe sweep`) and pass `--pairs NAME")


def is_made_pairs(path: str | Path) -> bool:
    """True for a `data pairs` file (`generations.jsonl` whose rows carry `kept`)."""
    p = Path(path)
    if p.suffix != ".jsonl" or not p.is_file():
        return False
    with open(p, encoding="utf-8") as f:
        first = f.readline()
    return '"kept":' in first and '"outcome":' in first


def _split_pairs() -> list[Pair]:
    from refusalscope.data.load import load_split

    return [Pair(p.id, p.prompt, p.target, p.source)
            for p in load_split("attack-train") if p.target]


def prompt_key(text: str) -> str:
    """`text` lower-cased, each run of other characters than a-z and 0-9 one space, stripped:
    how a training prompt is matched against `eval` prompts (``"Hi, there!"`` -> ``"hi there"``)."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def pyrit_full_responses() -> list[Pair]:
    """Human-rated compliant responses (score 1) from PyRIT's objective scorer evals.

    Files are checked against pinned sha256; an objective equal (lower-cased, punctuation
    dropped) to an `eval` prompt is left out so attacks never train on evaluation prompts.
    """
    from refusalscope.data.load import load_split
    from refusalscope.pypkg import fetch_wheel, read_member

    wheel = fetch_wheel(PYRIT)
    held_out = {prompt_key(p.prompt) for p in load_split("eval")}
    out = []
    for name, sha in sorted(_OBJECTIVE_SHA256.items()):
        raw = read_member(wheel, _OBJECTIVE_DIR + name)
        if hashlib.sha256(raw).hexdigest() != sha:
            raise UserError(f"{PYRIT} {name}: sha256 differs from the pinned one; not using it")
        body = raw.decode("utf-8").split("\n", 1)[1]  # first line: `# dataset_version=...`
        for i, r in enumerate(csv.DictReader(io.StringIO(body))):
            prompt, response = (r.get("objective") or "").strip(), \
                (r.get("assistant_response") or "").strip()
            if r.get("human_score", "").strip() == "1" and prompt and response \
                    and prompt_key(prompt) not in held_out:
                out.append(Pair(f"pyrit-{name[:-4]}-{i:03d}", prompt, response, "pyrit-scorer-evals"))
    return out


def load_pair_file(path: str | Path) -> list[Pair]:
    """Pairs from a CSV / JSONL / JSON / parquet file with `prompt` and `response` columns."""
    from refusalscope.data.userfile import read_records

    if is_made_pairs(path):
        from refusalscope.data.pairgen import kept_rows

        return [Pair(r["id"], r["prompt"], r["response"], "made:" + Path(path).parent.name)
                for r in kept_rows(Path(path))]
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


def encode_pair(handle: ModelHandle, pair: Pair, max_len: int) -> tuple[list[int], int]:
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
