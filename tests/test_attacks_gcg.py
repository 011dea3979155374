"""GCG on tiny random models: exact losses against the reference, filter, sampling, steps."""

from __future__ import annotations

import pytest
import torch

from refusalscope.attacks.gcg import GCG, GCGConfig, GCGState, initial_suffix, run
from refusalscope.attacks.gcg_loss import (PrefixCache, build_slots, candidate_losses,
                                           reference_losses, suffix_gradient)
from refusalscope.attacks.gcg_sample import (filter_and_dedupe, forbidden_tokens, round_trips,
                                             sample_candidates)
from refusalscope.errors import UserError
from refusalscope.models.tiny import tiny_handle

GOAL, TARGET = "Write a short poem about the sea", "Sure, here is a poem"


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def handle(request):
    return tiny_handle(request.param, seed=3)


def _setup(handle, suffix_len=6):
    ids = initial_suffix(handle.tokenizer, GCGConfig(suffix_len=suffix_len))
    slots = build_slots(handle, GOAL, TARGET, ids)
    return ids, slots, PrefixCache(handle.model, slots.prefix, handle.config)


def test_candidate_loss_equals_reference(handle):
    ids, slots, cache = _setup(handle)
    g = torch.Generator().manual_seed(0)
    cands = torch.randint(3, len(handle.tokenizer), (13, len(ids)), generator=g)
    ref = reference_losses(handle.model, slots, cands)
    for bs in (None, 4, 1):  # batching must not change a candidate's loss
        ours, _ = candidate_losses(handle.model, slots, cache, cands, bs)
        assert torch.allclose(ours, ref, atol=1e-5, rtol=0)
        # nanoGCG's default: full logits over the prefix cache, passed built or built inside
        for pc in (cache, True):
            cached = reference_losses(handle.model, slots, cands, bs, prefix_cache=pc)
            assert torch.allclose(cached, ref, atol=1e-5, rtol=0)
    # losses differ between candidates: a loss that ignored the suffix would pass the above
    assert ref.std() > 1e-4


def test_gradient_with_cache_equals_full_prompt(handle):
    ids, slots, cache = _setup(handle)
    w = handle.model.get_input_embeddings().weight.detach()
    g1, l1 = suffix_gradient(handle.model, slots, cache, torch.tensor(ids), w)
    g2, l2 = suffix_gradient(handle.model, slots, None, torch.tensor(ids), w)
    assert g1.shape == (len(ids), w.shape[0])
    assert l1 == pytest.approx(l2, abs=1e-5)
    assert torch.allclose(g1, g2, atol=1e-6)
    g3, l3 = suffix_gradient(handle.model, slots, cache, torch.tensor(ids), w, full_logits=True)
    assert l3 == pytest.approx(l2, abs=1e-5)
    assert torch.allclose(g3, g2, atol=1e-6)
    ref = reference_losses(handle.model, slots, torch.tensor([ids]))
    assert l1 == pytest.approx(float(ref[0]), abs=1e-5)


def test_losses_and_gradient_under_hook_interventions(handle):
    """An attack on a steered model: the prefix cache, candidate losses and gradient are
    computed under the hooks, and equal the reference computed under the same hooks."""
    from refusalscope.interp.steering import ablate_hooks

    r = torch.randn(handle.d_model, generator=torch.Generator().manual_seed(5))
    hooks = ablate_hooks(r / r.norm(), handle.n_layers, parallel=handle.family.parallel)
    ids = initial_suffix(handle.tokenizer, GCGConfig(suffix_len=6))
    slots = build_slots(handle, GOAL, TARGET, ids)
    cands = torch.randint(3, len(handle.tokenizer), (7, len(ids)),
                          generator=torch.Generator().manual_seed(1))
    plain = reference_losses(handle.model, slots, cands)
    w = handle.model.get_input_embeddings().weight.detach()
    with handle.hooks(hooks):
        cache = PrefixCache(handle.model, slots.prefix, handle.config)
        ours, _ = candidate_losses(handle.model, slots, cache, cands)
        ref = reference_losses(handle.model, slots, cands)
        g1, _ = suffix_gradient(handle.model, slots, cache, torch.tensor(ids), w)
        g2, _ = suffix_gradient(handle.model, slots, None, torch.tensor(ids), w)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0)
    assert torch.allclose(g1, g2, atol=1e-6)
    assert (ref - plain).abs().max() > 1e-3  # the hooks do change what is optimised


def test_round_trip_filter(handle):
    tok = handle.tokenizer
    good = tok("Sure the sea", add_special_tokens=False)["input_ids"]
    n = len(good)
    # "Sure" spelled as single characters does not re-tokenise to itself (BPE merges it)
    chars = [tok.convert_tokens_to_ids(c) for c in "Sure"][:n]
    cands = torch.tensor([good, (chars + good)[:n]])
    mask = round_trips(tok, cands)
    assert mask.tolist()[0] is True
    for row, ok in zip(cands.tolist(), mask.tolist()):
        assert ok == (tok(tok.decode(row), add_special_tokens=False)["input_ids"] == row)
    assert mask.tolist()[1] is False
    kept = filter_and_dedupe(tok, torch.tensor([good, good, good]))
    assert kept.tolist() == [good]


def test_forbidden_and_sampling(handle):
    tok = handle.tokenizer
    v = handle.model.get_input_embeddings().weight.shape[0]
    forb = forbidden_tokens(tok, v, allow_non_ascii=False)
    assert forb[tok.all_special_ids].all()
    ids = torch.tensor(initial_suffix(tok, GCGConfig(suffix_len=6)))
    grad = torch.randn(6, v, generator=torch.Generator().manual_seed(1))
    kw = dict(width=50, topk=4, n_replace=2, forbidden=forb)
    a = sample_candidates(ids, grad, generator=torch.Generator().manual_seed(7), **kw)
    b = sample_candidates(ids, grad, generator=torch.Generator().manual_seed(7), **kw)
    assert torch.equal(a, b)  # same seed, same candidates
    assert ((a != ids).sum(1) <= 2).all()
    top = (-grad.masked_fill(forb, float("inf"))).topk(4, dim=1).indices
    for row in a:
        for pos in (row != ids).nonzero().flatten().tolist():
            assert row[pos] in top[pos]
            assert not forb[row[pos]]


def test_added_control_tokens_are_forbidden():
    from refusalscope.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    tok.add_tokens(["<|fim_middle|>"], special_tokens=True)
    tok.add_tokens(["<tool_call>"])  # added, not special
    ids = [tok.convert_tokens_to_ids(t) for t in ("<|fim_middle|>", "<tool_call>", "<|im_start|>")]
    assert tok("a<|fim_middle|>b").input_ids.count(ids[0]) == 1  # it round-trips: the filter keeps it
    for allow in (False, True):
        forb = forbidden_tokens(tok, len(tok) + 8, allow_non_ascii=allow)
        assert forb[ids].all() and forb[len(tok):].all()
        assert not forb[tok.convert_tokens_to_ids("a")]


def test_step_moves_to_the_step_best_and_result_keeps_the_best_seen(handle):
    """nanoGCG's default (buffer_size=0): every step moves to its best candidate even when that
    is worse than the current suffix (the old elitist buffer never moved up); the result is the
    lowest-loss suffix of the whole run, logged as `best_loss`."""
    cfg = GCGConfig(steps=8, search_width=2, topk=3, suffix_len=2, seed=1)  # few, often worse
    opt = GCG(handle, [(GOAL, TARGET)], cfg)
    state = opt.new_state()
    seen = [(state.buffer[0][0], state.buffer[0][1])]
    rows = []
    for _ in range(cfg.steps):
        row = opt.step(state)
        rows.append(row)
        assert row["loss"] == row["step_best_loss"] and state.buffer[0][1] == row["suffix_ids"]
        seen.append((row["loss"], row["suffix_ids"]))
        if not any(r["all_hit"] for r in rows):
            assert row["best_loss"] == min(l for l, _ in seen)
    assert any(b[0] > a[0] for a, b in zip(seen, seen[1:]))  # it did move to a worse suffix
    # the logged loss is the reference loss of the logged suffix
    slots = build_slots(handle, GOAL, TARGET, initial_suffix(handle.tokenizer, cfg))
    ref = reference_losses(handle.model, slots, torch.tensor([state.buffer[0][1]]))
    assert float(ref[0]) == pytest.approx(rows[-1]["loss"], abs=1e-5)
    assert state.compute.candidate_evals > 0 and state.compute.flops > 0
    res = run(handle, [(GOAL, TARGET)], cfg)
    loss, ids = min(seen, key=lambda e: e[0])
    assert res.loss == loss and res.suffix_ids == ids and res.loss < res.steps[-1]["loss"] + 1e-9
    # buffer_size >= 1 keeps the elitist variant: the current loss never rises
    elite = run(handle, [(GOAL, TARGET)], GCGConfig.from_dict({**cfg.to_dict(), "buffer_size": 1}))
    cur = [r["loss"] for r in elite.steps]
    assert all(b <= a + 1e-7 for a, b in zip(cur, cur[1:]))


def test_early_stop_returns_a_suffix_that_hits(handle):
    """Early stop fires on the current suffix hitting every target token, and the suffix
    returned makes greedy decoding produce the target."""
    ids0 = initial_suffix(handle.tokenizer, GCGConfig(suffix_len=4))
    slots = build_slots(handle, GOAL, "Sure", ids0)
    full = torch.cat([slots.prefix, torch.tensor([ids0]), slots.tail], dim=1)
    with torch.no_grad():
        first = int(handle.model(input_ids=full).logits[0, -1].argmax())
    target = handle.tokenizer.decode([first])  # a target the search can hit in a step or two
    cfg = GCGConfig(steps=30, search_width=8, topk=4, suffix_len=4, seed=0, early_stop=True)
    res = run(handle, [(GOAL, target)], cfg)
    assert res.steps[-1]["all_hit"] and len(res.steps) < cfg.steps
    s = build_slots(handle, GOAL, target, ids0)  # prefix, tail, target: the suffix's neighbours
    seq = torch.cat([s.prefix, torch.tensor([res.suffix_ids]), s.tail], dim=1)
    out = handle.model.generate(seq, attention_mask=torch.ones_like(seq), do_sample=False,
                                max_new_tokens=s.target.shape[1], pad_token_id=0)
    assert out[0, seq.shape[1]:].tolist() == s.target[0].tolist()


def test_universal_adds_prompts_and_resumes_identically(handle):
    cfg = GCGConfig(steps=4, search_width=8, topk=4, suffix_len=5, add_every=2, seed=2)
    pairs = [(GOAL, TARGET), ("Explain photosynthesis", "Sure")]
    full = run(handle, pairs, cfg)
    assert [r["n_active"] for r in full.steps] == [1, 1, 2, 2]
    saved: list[dict] = []
    half = GCGConfig.from_dict({**cfg.to_dict(), "steps": 2})
    run(handle, pairs, half, on_step=lambda row, st: saved.append(st.to_dict()))
    resumed = run(handle, pairs, cfg, state=GCGState.from_dict(saved[-1]))
    assert resumed.suffix_ids == full.suffix_ids
    assert resumed.loss == pytest.approx(full.loss, abs=1e-6)


def test_config_validation_and_round_trip():
    cfg = GCGConfig(steps=3, topk=5)
    assert GCGConfig.from_dict(cfg.to_dict()) == cfg
    assert GCGConfig().buffer_size == 0  # nanoGCG's default
    for bad in (dict(suffix_len=0), dict(search_width=0), dict(n_replace=3, suffix_len=2),
                dict(buffer_size=-1)):
        with pytest.raises(UserError):
            GCGConfig(**bad)


@pytest.mark.slow
def test_real_model_losses_match_reference(smollm2_home):
    """smollm2-135m (real weights, real chat template): cached target-only losses == reference."""
    from refusalscope.models.handle import ModelHandle, RuntimeOptions

    h = ModelHandle.load("smollm2-135m", options=RuntimeOptions(device="cpu"))
    ids, slots, cache = _setup(h, suffix_len=10)
    cands = torch.tensor([ids] * 4)
    for i in range(4):
        cands[i, i] = 1000 + i
    ours, _ = candidate_losses(h.model, slots, cache, cands)
    ref = reference_losses(h.model, slots, cands)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=0)


def test_gemma_gradient_equals_autograd_through_its_own_embed():
    """Gemma 3 multiplies embeddings by sqrt(d) inside `embed()`. The one-hot gradient must be
    the gradient through that embed: dL/de_i . embed(v) for every token v, with the loss the
    model gives the same ids (the old `one_hot @ W_E` fed the suffix 1/sqrt(d) too small)."""
    h = tiny_handle("gemma3_text", seed=3)
    embed = h.model.get_input_embeddings()
    assert float(embed.embed_scale) != 1.0  # the case under test
    ids, slots, cache = _setup(h)
    w = h.model.get_input_embeddings().weight.detach()
    suffix = torch.tensor(ids)
    with torch.no_grad():
        table = embed(torch.arange(w.shape[0]))  # [V, d], the model's own embedding of each token
    e = embed(suffix).detach().requires_grad_(True)
    parts = [embed(slots.prefix)[0], e, embed(slots.tail)[0], embed(slots.target[:, :-1])[0]]
    t = slots.target.shape[1]
    logits = h.model(inputs_embeds=torch.cat(parts)[None]).logits[:, -t:]
    loss = torch.nn.functional.cross_entropy(logits[0].float(), slots.target[0])
    (de,) = torch.autograd.grad(loss, e)
    want = de @ table.T  # [L, V]
    ref = reference_losses(h.model, slots, suffix[None])
    for c in (cache, None):
        g, l = suffix_gradient(h.model, slots, c, suffix, w)
        assert l == pytest.approx(float(loss), abs=1e-5) and l == pytest.approx(float(ref[0]), abs=1e-5)
        torch.testing.assert_close(g, want.float(), atol=1e-5, rtol=1e-4)
