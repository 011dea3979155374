"""GCG's two model computations: the candidate loss and the one-hot suffix gradient.

A prompt is laid out as ``prefix | suffix | tail | target``: the chat template up to and
including the goal, the optimised suffix tokens, the rest of the template up to the assistant
header, and the target reply. The prefix never changes, so its KV cache is computed once
(`PrefixCache`) and reused by every candidate forward and by the gradient step. Only the
positions that predict target tokens produce logits (`logits_to_keep`), so the lm_head runs on
T rows per candidate instead of the whole sequence. `reference_losses` (and `suffix_gradient`
with `full_logits=True`) is nanoGCG's computation: full-vocabulary logits at every fed position,
with or without its prefix cache; kept for tests and the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from refusalscope.errors import UserError

if TYPE_CHECKING:
    from refusalscope.models.handle import ModelHandle

SUFFIX_MARK = "{optim_str}"


@dataclass(frozen=True)
class PromptSlots:
    """Token ids of one prompt's parts, each `[1, n]` on the model's device."""

    prefix: Any
    tail: Any
    target: Any
    goal: str
    target_text: str


def build_slots(handle: ModelHandle, goal: str, target: str, suffix_ids: list[int],
                system: str | None = None) -> PromptSlots:
    """Tokenise `goal`'s chat prompt around the suffix slot; check the parts round-trip.

    The template is rendered once with a marker where the suffix goes; text before and after
    the marker is tokenised separately. If tokenising the whole rendered prompt does not give
    the concatenation of the parts, token boundaries are not where we think: `UserError`.
    """
    import torch

    if not target.strip():
        raise UserError("the GCG target is empty: give a reply prefix such as 'Sure, here is'")
    tok = handle.tokenizer
    text = handle.format_prompt(f"{goal}{SUFFIX_MARK}", system)
    if text.count(SUFFIX_MARK) != 1:
        raise UserError("the chat template does not keep the user text verbatim; GCG needs it")
    before, after = text.split(SUFFIX_MARK)
    special = not handle.has_chat_template
    pre = tok(before, add_special_tokens=special)["input_ids"]
    tail = tok(after, add_special_tokens=False)["input_ids"]
    tgt = tok(target, add_special_tokens=False)["input_ids"]
    whole = tok(before + tok.decode(suffix_ids) + after, add_special_tokens=special)["input_ids"]
    if whole != pre + list(suffix_ids) + tail:
        raise UserError(f"prompt {goal[:40]!r}...: template parts do not tokenise to the whole "
                        "prompt; try another initial suffix")
    dev = handle.device
    as_t = lambda ids: torch.tensor([ids], dtype=torch.long, device=dev)  # noqa: E731
    return PromptSlots(as_t(pre), as_t(tail), as_t(tgt), goal, target)


class PrefixCache:
    """The prefix's per-layer keys/values, computed once; `expand(b)` gives a fresh cache.

    A transformers cache object is extended in place by every forward, so each call gets a new
    `DynamicCache` built from the stored tensors (expanded views; the cache copies them when it
    concatenates the new positions, which for a short prefix is cheap).
    """

    def __init__(self, model: Any, prefix_ids: Any, config: Any):
        import torch
        from transformers import DynamicCache

        from refusalscope.decode import cache_kwarg

        self.kw = cache_kwarg(model)
        cache = DynamicCache(config=config)
        with torch.no_grad():
            model(input_ids=prefix_ids, use_cache=True, logits_to_keep=1, **{self.kw: cache})
        self.kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.config = config
        self.length = prefix_ids.shape[1]

    def expand(self, batch: int) -> Any:
        from transformers import DynamicCache

        data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.kv]
        return DynamicCache(ddp_cache_data=data, config=self.config)


def target_loss(logits: Any, target: Any) -> tuple[Any, Any]:
    """Mean cross-entropy per row over target positions, and whether argmax hits every token.

    logits: `[B, T, V]`, target: `[1, T]` -> (`[B]` float32, `[B]` bool).
    """
    import torch

    b = logits.shape[0]
    tgt = target.expand(b, -1)
    picked = logits.gather(-1, tgt[..., None])[..., 0].float()
    # log-normaliser in float32, a few rows at a time: a float copy of [B, T, V] bf16 logits
    # would cost more memory traffic than the lm_head itself
    step = max(1, (1 << 27) // max(1, logits.shape[1] * logits.shape[2]))
    lse = torch.cat([logits[i:i + step].float().logsumexp(-1) for i in range(0, b, step)])
    return (lse - picked).mean(-1), (logits.argmax(-1) == tgt).all(-1)


def candidate_losses(model: Any, slots: PromptSlots, cache: PrefixCache, cands: Any,
                     batch_size: int | None = None) -> tuple[Any, Any]:
    """Loss and exact-match flag for each candidate suffix, `cands: [B, L]` -> (`[B]`, `[B]`).

    Runs in batches of `batch_size` (all at once if None); the caller backs off on OOM.
    """
    import torch

    t = slots.target.shape[1]
    n = cands.shape[0]
    step = batch_size or n
    losses, hits = [], []
    with torch.inference_mode():
        for i in range(0, n, step):
            c = cands[i:i + step]
            b = c.shape[0]
            ids = torch.cat([c, slots.tail.expand(b, -1), slots.target[:, :-1].expand(b, -1)], 1)
            out = model(input_ids=ids, use_cache=True, **{cache.kw: cache.expand(b)},
                        logits_to_keep=t)
            loss, hit = target_loss(out.logits, slots.target)
            losses.append(loss)
            hits.append(hit)
    return torch.cat(losses), torch.cat(hits)


def suffix_gradient(model: Any, slots: PromptSlots, cache: PrefixCache | None,
                    suffix_ids: Any, embed_weight: Any, *,
                    full_logits: bool = False) -> tuple[Any, float]:
    """d loss / d one-hot(suffix): `[L, V]` float32, and the loss at `suffix_ids` (`[L]`).

    With a prefix cache the backward pass runs through suffix, tail and target positions only;
    with `cache=None` the whole prompt is fed (nanoGCG's `use_prefix_cache=False`). The lm_head
    runs on the T target-predicting rows only, unless `full_logits` (nanoGCG's way: every fed
    position; `cache=None` always does) -- same gradient, more work.
    """
    import torch

    embed = model.get_input_embeddings()
    one_hot = torch.nn.functional.one_hot(suffix_ids, embed_weight.shape[0]).to(embed_weight.dtype)
    one_hot.requires_grad_(True)
    t = slots.target.shape[1]
    # Gemma scales its embeddings by sqrt(d) inside embed(): the suffix must be scaled alike
    scale = getattr(embed, "embed_scale", None)
    suffix = one_hot @ embed_weight
    if scale is not None:
        suffix = suffix * scale.to(suffix.dtype)
    parts = [suffix[None], embed(slots.tail), embed(slots.target[:, :-1])]
    if cache is None:
        parts.insert(0, embed(slots.prefix))
        out = model(inputs_embeds=torch.cat(parts, 1), use_cache=False)
        logits = out.logits[:, -t:]
    else:
        keep = {} if full_logits else {"logits_to_keep": t}
        out = model(inputs_embeds=torch.cat(parts, 1), use_cache=True,
                    **{cache.kw: cache.expand(1)}, **keep)
        logits = out.logits[:, -t:]
    loss, _ = target_loss(logits, slots.target)
    (grad,) = torch.autograd.grad(loss.sum(), one_hot)
    return grad.float(), float(loss.item())


def reference_losses(model: Any, slots: PromptSlots, cands: Any, batch_size: int | None = None,
                     *, prefix_cache: PrefixCache | bool | None = None) -> Any:
    """nanoGCG's candidate loss, full-vocabulary logits at every fed position: `[B, L]` -> `[B]`.

    `prefix_cache=None`/`False` feeds the whole prompt per candidate (nanoGCG with
    `use_prefix_cache=False`, the baseline of the first benchmarks). A `PrefixCache` (or `True`:
    one is built here, one prefix forward per call) feeds suffix | tail | target over the cached
    prefix, as nanoGCG does by default. Kept to check `candidate_losses` against and as the
    benchmark's baseline.
    """
    import torch

    cache = prefix_cache
    if cache is True:
        cache = PrefixCache(model, slots.prefix, model.config)
    t = slots.target.shape[1]
    n = cands.shape[0]
    step = batch_size or n
    out_losses = []
    with torch.inference_mode():
        for i in range(0, n, step):
            c = cands[i:i + step]
            b = c.shape[0]
            parts = [c, slots.tail.expand(b, -1), slots.target.expand(b, -1)]
            if isinstance(cache, PrefixCache):
                kw: dict[str, Any] = {"use_cache": True, cache.kw: cache.expand(b)}
            else:
                parts.insert(0, slots.prefix.expand(b, -1))
                kw = {"use_cache": False}
            logits = model(input_ids=torch.cat(parts, 1), **kw).logits  # [B, S, V]
            shift = logits[:, -t - 1:-1]
            out_losses.append(target_loss(shift, slots.target)[0])
    return torch.cat(out_losses)


def with_oom_backoff(fn: Callable[[int | None], Any], n: int, start: int | None) -> tuple[Any, int]:
    """Call `fn(batch_size)`, halving the batch size on out-of-memory; returns (result, size)."""
    import torch

    size = start or n
    while True:
        try:
            return fn(size), size
        except torch.OutOfMemoryError:
            if size <= 1:
                raise
            size = max(1, size // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()  # once per back-off, not per batch
