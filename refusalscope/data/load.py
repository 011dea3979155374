"""Read prompts: a built split (`load_split`), or a user's file / hub dataset (`load_prompt_file`).

This is the API the rest of refusalscope uses. Both return `Prompt` records, in a fixed order,
so a run that asks for the first n prompts always gets the same ones.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from refusalscope.data.build import HARMFUL_FILE, HARMLESS_FILE, SPLITS, built_dir
from refusalscope.errors import UserError

log = logging.getLogger(__name__)

__all__ = ["SPLITS", "Prompt", "load_prompt_file", "load_split"]

LABELS = ("harmful", "harmless")


@dataclass(frozen=True)
class Prompt:
    """One request to send to a model, with where it came from.

    `split` is one of `SPLITS` for built data (``"user"`` for a user's file); `label` is
    ``"harmful"`` or ``"harmless"``; `target` is a compliant reply prefix where the source has
    one (AdvBench's "Sure, here is ..."), used by attacks that optimise towards it.
    """

    id: str
    prompt: str
    split: str
    label: str
    source: str
    category: str | None = None
    target: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_split(split: str, *, harmless: bool = False, n: int | None = None) -> list[Prompt]:
    """The prompts of one built split, in the built (seeded-shuffle) order; the first `n` if given.

    Example:
        >>> [p.split for p in load_split("eval", n=2)]
        ['eval', 'eval']
    """
    if split not in SPLITS:
        raise UserError(f"unknown split {split!r}: one of {', '.join(SPLITS)}")
    if n is not None and n < 1:
        raise UserError(f"n must be at least 1 (got {n})")
    path = built_dir() / (HARMLESS_FILE if harmless else HARMFUL_FILE)
    if not path.is_file():
        raise UserError(f"no built data in {path.parent}: run `refusalscope data build` first")
    out = [p for p in _read_built(path) if p.split == split]
    if n is not None:
        if len(out) < n:
            log.warning("split %s has only %d %s prompts (asked for %d)", split, len(out),
                        "harmless" if harmless else "harmful", n)
        out = out[:n]
    return out


def _read_built(path: Path) -> list[Prompt]:
    prompts: list[Prompt] = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                prompts.append(Prompt(id=r["id"], prompt=r["prompt"], split=r["split"],
                                      label=r["label"], source=r["source"],
                                      category=r.get("category"), target=r.get("target")))
            except (ValueError, KeyError, TypeError):
                raise UserError(f"{path} line {i} is corrupt: run `refusalscope data build` "
                                "again") from None
    return prompts


def load_prompt_file(path: str | Path, *, prompt_col: str = "prompt", id_col: str | None = None,
                     label: str = "harmful", split: str = "user", target_col: str | None = None,
                     category_col: str | None = None) -> list[Prompt]:
    """Prompts from a user's CSV / TSV / JSONL / JSON / parquet file, or a hub dataset.

    `path` is a local file; else the name of a file made by `data import`; else, if it looks
    like ``owner/name[:split]``, a Hugging Face dataset (needs the hub). Columns named ``id``,
    ``target``, ``category`` and ``source`` are used when present and not given explicitly;
    rows without an id get a stable one from a hash of the prompt. Bad input -> `UserError`.

    Example:
        >>> load_prompt_file("my_prompts.csv", prompt_col="goal", target_col="target")[0].label
        'harmful'
    """
    if label not in LABELS:
        raise UserError(f"label must be one of {', '.join(LABELS)} (got {label!r})")
    from refusalscope.data import userfile

    records, name, source = userfile.read_records(path)
    rows = userfile.map_columns(records, name=name, prompt_col=prompt_col, id_col=id_col,
                                target_col=target_col, category_col=category_col, source=source)
    return [Prompt(id=r["id"], prompt=r["prompt"], split=split, label=label, source=r["source"],
                   category=r["category"], target=r["target"]) for r in rows]
