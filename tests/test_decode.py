"""Our pruning decode loop against transformers' own `generate` (greedy, fp32, tiny models)."""

from __future__ import annotations

import pytest
import torch

from refusalscope.decode import decode
from refusalscope.models.tiny import tiny_handle

TEXTS = ["Write a short poem about the sea.", "hello", "The quick brown fox jumps over",
         "Explain how photosynthesis works in plants, step by step please."]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3_text", "phi"])
def test_greedy_matches_hf_generate(arch):
    h = tiny_handle(arch, seed=4)
    enc = h.tokenizer([h.format_prompt(t) for t in TEXTS], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    eos = {h.tokenizer.eos_token_id}
    ours = decode(h.model, enc["input_ids"], enc["attention_mask"], max_new_tokens=12, eos_ids=eos)
    with torch.inference_mode():
        ref = h.model.generate(**enc, max_new_tokens=12, do_sample=False, temperature=None,
                               top_p=None, top_k=None, pad_token_id=h.tokenizer.pad_token_id)
    width = enc["input_ids"].shape[1]
    for row, tokens in enumerate(ours):
        expected = ref[row, width:].tolist()
        assert tokens == expected[: len(tokens)]
        assert len(tokens) == 12 or tokens[-1] in eos


def test_finished_rows_leave_the_batch():
    """A row whose first token is the end token stops; the others continue unchanged."""
    h = tiny_handle("llama", seed=4)
    enc = h.tokenizer([h.format_prompt(t) for t in TEXTS], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    full = decode(h.model, enc["input_ids"], enc["attention_mask"], max_new_tokens=8, eos_ids={10**6})
    first = full[1][0]  # make row 1's first token an end token
    pruned = decode(h.model, enc["input_ids"], enc["attention_mask"], max_new_tokens=8,
                    eos_ids={10**6, first})
    assert pruned[1] == [first]
    for row in (0, 2, 3):
        stop = next((i for i, t in enumerate(full[row]) if t == first), None)
        assert pruned[row] == (full[row] if stop is None else full[row][: stop + 1])


def test_sampling_seeded_and_top_p_one_token():
    h = tiny_handle("qwen2", seed=0)
    enc = h.tokenizer([h.format_prompt(t) for t in TEXTS], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    args = (h.model, enc["input_ids"], enc["attention_mask"])
    a = decode(*args, max_new_tokens=6, eos_ids={10**6}, temperature=1.0, seed=1)
    assert a == decode(*args, max_new_tokens=6, eos_ids={10**6}, temperature=1.0, seed=1)
    assert a != decode(*args, max_new_tokens=6, eos_ids={10**6}, temperature=1.0, seed=2)
    # top_p -> 0 keeps only the most likely token: sampling becomes greedy.
    greedy = decode(*args, max_new_tokens=6, eos_ids={10**6})
    assert decode(*args, max_new_tokens=6, eos_ids={10**6}, temperature=1.0, top_p=1e-9, seed=3) == greedy


MIXED = TEXTS + ["hi", "Name three rivers in Europe and say which is longest.", "ok then",
                 "List every prime number below fifty, separated by commas, in order."]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "phi", "gemma3_text"])
def test_grouped_prefill_matches_hf_generate(arch, monkeypatch):
    """Prefill in groups of 3 rows (caches padded and stacked back) changes no token."""
    import refusalscope.decode as dec

    monkeypatch.setattr(dec, "PREFILL_GROUP", 3)
    h = tiny_handle(arch, seed=5)
    enc = h.tokenizer([h.format_prompt(t) for t in MIXED], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    ours = decode(h.model, enc["input_ids"], enc["attention_mask"], max_new_tokens=10,
                  eos_ids={10**6})
    with torch.inference_mode():
        ref = h.model.generate(**enc, max_new_tokens=10, do_sample=False, temperature=None,
                               top_p=None, top_k=None, pad_token_id=h.tokenizer.pad_token_id)
    width = enc["input_ids"].shape[1]
    assert ours == [ref[row, width:].tolist() for row in range(len(MIXED))]


def test_grouped_prefill_logits_equal_whole_batch():
    from refusalscope.decode import cache_kwarg, prefill

    h = tiny_handle("qwen2", seed=6)
    enc = h.tokenizer([h.format_prompt(t) for t in MIXED], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    mask = enc["attention_mask"].long()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    kw = cache_kwarg(h.model)
    with torch.inference_mode():
        whole, c_whole = prefill(h.model, enc["input_ids"], mask, pos, kw=kw, group=100)
        grouped, c_grouped = prefill(h.model, enc["input_ids"], mask, pos, kw=kw, group=2)
    torch.testing.assert_close(grouped, whole, atol=1e-5, rtol=1e-5)
    real = mask.bool()  # cache entries under padding differ (zeros vs pad-token keys); masked
    for lw, lg in zip(c_whole.layers, c_grouped.layers, strict=True):
        assert lg.keys.shape == lw.keys.shape
        torch.testing.assert_close(lg.keys.transpose(1, 2)[real], lw.keys.transpose(1, 2)[real],
                                   atol=1e-5, rtol=1e-5)
