"""GCG candidate sampling and filtering: top-k token swaps from the gradient, kept only if the
suffix text tokenises back to the same ids (otherwise the loss would be for a prompt the model
never sees once the suffix is written out as text)."""

from __future__ import annotations

from typing import Any

from refusalscope.errors import UserError

_FORBIDDEN: dict[tuple[int, int, int, bool], Any] = {}  # same tokenizer object -> one mask


def forbidden_tokens(tokenizer: Any, vocab_size: int, allow_non_ascii: bool) -> Any:
    """`[V]` bool mask of tokens never sampled: specials, every added token (chat and FIM control
    tokens such as `<|im_start|>` or `<|fim_middle|>`, which a user of a chat API cannot type and
    which round-trip, so the filter would keep them; transformers 5's `all_special_ids` misses
    most of them, e.g. 2 of Qwen2.5's 22), ids past the tokenizer, empty text, and (unless
    `allow_non_ascii`) tokens whose text is not printable ASCII. Cached."""
    import torch

    key = (id(tokenizer), len(tokenizer), vocab_size, allow_non_ascii)
    if key in _FORBIDDEN:
        return _FORBIDDEN[key]
    n = min(len(tokenizer), vocab_size)
    texts = tokenizer.batch_decode([[i] for i in range(n)])
    mask = torch.ones(vocab_size, dtype=torch.bool)
    ok = [bool(t) and (allow_non_ascii or (t.isascii() and t.isprintable())) for t in texts]
    mask[:n] = ~torch.tensor(ok)
    mask[list(tokenizer.all_special_ids)] = True
    added = [i for i in getattr(tokenizer, "added_tokens_decoder", {}) if i < vocab_size]
    mask[added] = True
    _FORBIDDEN[key] = mask
    return mask


def sample_candidates(ids: Any, grad: Any, *, width: int, topk: int, n_replace: int,
                      forbidden: Any, generator: Any) -> Any:
    """`width` suffixes, each `ids` (`[L]`) with `n_replace` positions swapped for one of the
    `topk` tokens with the most negative gradient there. -> `[width, L]` on the CPU; random
    draws come from the CPU `generator`, so results do not depend on the device."""
    import torch

    g = grad.clone()
    g[:, forbidden.to(g.device)] = float("inf")
    top = (-g).topk(topk, dim=1).indices.cpu()  # [L, topk], on grad's device (GPU: faster)
    length = ids.shape[0]
    pos = torch.rand(width, length, generator=generator).argsort(-1)[:, :n_replace]
    pick = torch.randint(0, topk, (width, n_replace, 1), generator=generator)
    new = top[pos].gather(2, pick).squeeze(-1)  # [width, n_replace]
    return ids.cpu().repeat(width, 1).scatter_(1, pos, new)


def round_trips(tokenizer: Any, cands: Any) -> Any:
    """`[B]` bool: decoding each suffix and encoding it again gives the same ids (one batched
    decode and one batched encode)."""
    import torch

    rows = cands.tolist()
    texts = tokenizer.batch_decode(rows)
    again = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return torch.tensor([a == r for a, r in zip(again, rows, strict=True)], dtype=torch.bool)


def filter_and_dedupe(tokenizer: Any, cands: Any) -> Any:
    """Candidates that round-trip, duplicates removed (first occurrence kept, order kept)."""
    import torch

    kept = cands[round_trips(tokenizer, cands)]
    if kept.shape[0] == 0:
        raise UserError("no GCG candidate suffix survives tokenisation round-trip; "
                        "try --allow-non-ascii or another initial suffix")
    seen: set[tuple[int, ...]] = set()
    keep = []
    for i, row in enumerate(kept.tolist()):
        t = tuple(row)
        if t not in seen:
            seen.add(t)
            keep.append(i)
    return kept[torch.tensor(keep)]
