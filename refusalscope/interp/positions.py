"""Which token positions activations are read at.

* ``post-instruction``: the chat template's tokens between the end of the user's instruction and
  the start of the reply (for Qwen's ChatML: ``<|im_end|>``, ``\\n``, ``<|im_start|>``,
  ``assistant``, ``\\n``). Arditi et al. (2024) take refusal directions at these positions.
* ``last``: the final prompt token (the last post-instruction token when a template is used).
* ``mean``: the mean over all real (unpadded) prompt tokens.

Every prompt fed through `ModelHandle.format_prompt` ends with the same post-instruction text, so
its tokens are the last `n_post` real tokens of each row whatever the padding side.
"""

from __future__ import annotations

from typing import Any

POSITION_KINDS = ("post-instruction", "last", "mean")
_SENTINEL = "Name three primary colours."


def post_instruction_count(handle: Any) -> int:
    """How many tokens the template puts after the instruction (at least 1).

    Found by formatting a sentinel instruction and counting the tokens that start after it, so
    a template whose first post-instruction token could merge with the instruction's end is
    still split where the tokenizer splits it.
    """
    text = handle.format_prompt(_SENTINEL)
    end = text.rindex(_SENTINEL) + len(_SENTINEL)
    enc = handle.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    n = sum(1 for start, _ in enc["offset_mapping"] if start >= end)
    return max(n, 1)


def n_positions(kind: str, n_post: int) -> int:
    """Positions per prompt that `gather` returns for `kind`."""
    check_kind(kind)
    return n_post if kind == "post-instruction" else 1


def check_kind(kind: str) -> None:
    if kind not in POSITION_KINDS:
        from refusalscope.errors import UserError

        raise UserError(f"unknown position {kind!r}: one of {', '.join(POSITION_KINDS)}")


def gather(acts: Any, attention_mask: Any, kind: str, n_post: int) -> Any:
    """Activations `(batch, seq, d)` -> `(batch, n_positions(kind, n_post), d)` at `kind`.

    Example:
        x = gather(resid, enc["attention_mask"], "post-instruction", post_instruction_count(h))
    """
    import torch

    check_kind(kind)
    mask = attention_mask.to(acts.device)
    if kind == "mean":
        w = mask.to(acts.dtype).unsqueeze(-1)
        return ((acts * w).sum(1) / w.sum(1).clamp_min(1)).unsqueeze(1)
    seq = mask.shape[1]
    # index of each row's last real token, for left or right padding
    idx = torch.arange(seq, device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), idx, torch.full_like(idx, -1)).max(dim=1).values
    k = n_positions(kind, n_post)
    offs = torch.arange(k - 1, -1, -1, device=mask.device)
    pos = (last.unsqueeze(1) - offs).clamp_min(0)  # (batch, k), oldest first
    return torch.gather(acts, 1, pos.unsqueeze(-1).expand(-1, -1, acts.shape[-1]))
