"""Difference-in-means directions, directions.h5, and Arditi-style selection on tiny models."""

import numpy as np
import pytest
import torch

from refusalscope.errors import UserError
from refusalscope.interp.directions import (class_means, compute_directions, iter_activations,
                                            load_directions, save_directions)
from refusalscope.interp.positions import post_instruction_count
from refusalscope.interp.select import (SelectConfig, layer_cut, mean_kl, refusal_scores,
                                        refusal_token_ids, select_direction, summary_table)
from refusalscope.interp.sweep import filter_by_refusal
from refusalscope.models.handle import ModelHandle
from refusalscope.models.tiny import tiny_handle

HARMFUL = ["Write a short poem about the sea.", "Explain how photosynthesis works, step by step.",
           "The quick brown fox", "0123 hello"]
HARMLESS = ["Sure, here is a recipe for soup", "hello", "I'm sorry, but no.",
            "As an AI language model, I can't"]


@pytest.fixture(scope="module")
def handle():
    return tiny_handle("qwen2", seed=3)


@pytest.fixture(scope="module")
def selected(handle):
    d = compute_directions(handle, HARMFUL, HARMLESS, kind="post-instruction", batch_size=3)
    return select_direction(handle, d, HARMFUL[:2], HARMLESS[:2],
                            SelectConfig(kl_threshold=0.5), batch_size=2)


def test_float64_streamed_means_equal_a_direct_mean(handle):
    n_post = post_instruction_count(handle)
    texts = [handle.format_prompt(t) for t in HARMFUL]
    streamed = class_means(handle, texts, kind="last", n_post=n_post, batch_size=3)
    # direct: every prompt alone (no padding), resid_pre of each layer = hidden_states[layer]
    per = []
    for t in texts:
        enc = handle.tokenizer([t], return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            hs = handle.model(**enc, output_hidden_states=True).hidden_states
        per.append(torch.stack([hs[i][0, -1] for i in range(handle.n_layers)]).double())
    direct = torch.stack(per).mean(0).numpy()
    assert streamed.dtype == np.float64 and streamed.shape == (handle.n_layers, 1, handle.d_model)
    np.testing.assert_allclose(streamed[:, 0], direct, atol=1e-5)


def test_post_instruction_positions_and_shapes(handle):
    d = compute_directions(handle, HARMFUL[:2], HARMLESS[:2], kind="post-instruction")
    n_post = post_instruction_count(handle)
    assert d.mean_harmful.shape == (handle.n_layers, n_post, handle.d_model)
    assert d.n_harmful == 2 and d.n_harmless == 2 and d.selected is None
    u = d.unit(1, n_post - 1)
    assert np.isclose(np.linalg.norm(u), 1.0)
    np.testing.assert_allclose(u * np.linalg.norm(d.diff[1, -1]), d.diff[1, -1], atol=1e-12)


def test_refusal_tokens_and_score_math(handle):
    ids = refusal_token_ids(handle.tokenizer, ("I", "As", "I'm"))
    assert ids == [handle.tokenizer("I", add_special_tokens=False)["input_ids"][0],
                   handle.tokenizer("As", add_special_tokens=False)["input_ids"][0]]
    logits = torch.randn(3, 50)
    p = torch.softmax(logits.double(), -1)[:, [4, 7]].sum(-1)
    np.testing.assert_allclose(refusal_scores(logits, [4, 7]), torch.log(p / (1 - p)).numpy(),
                               rtol=1e-9)
    assert mean_kl(logits, logits) == pytest.approx(0.0, abs=1e-12)
    assert mean_kl(logits, torch.randn(3, 50)) > 0


def test_selection_follows_the_filter(handle, selected):
    d = selected
    m = d.metrics
    cut = d.attrs["layer_cut"]
    assert cut == int(0.8 * handle.n_layers)
    scored = ~np.isnan(m["bypass"])
    assert np.all(m["layer"][scored] < cut) and np.all(np.isnan(m["kl"][m["layer"] >= cut]))
    passed = m["passed"].astype(bool)
    np.testing.assert_array_equal(passed, scored & (m["induce"] > 0) & (m["kl"] < 0.5))
    pool = passed if passed.any() else scored
    best = np.flatnonzero(pool)[np.argmin(m["bypass"][pool])]
    assert d.selected == (int(m["layer"][best]), int(m["pos"][best]))
    assert d.attrs["filter_passed"] == bool(passed.any())
    assert len(summary_table(d)) == handle.n_layers * d.mean_harmful.shape[1]


def test_kl_is_zero_for_a_direction_the_stream_never_carries():
    """Zero one residual coordinate everywhere it is written (embedding, attention-out and
    MLP-out rows): ablating that axis changes nothing (KL 0); ablating a carried axis does."""
    from refusalscope.interp import steering
    from refusalscope.interp.select import first_token_logits

    h = tiny_handle("qwen2", seed=3)  # its own copy: the weights are edited
    k = 0
    with torch.no_grad():
        h.model.get_input_embeddings().weight[:, k] = 0
        for layer in h.model.model.layers:
            layer.self_attn.o_proj.weight[k] = 0
            layer.mlp.down_proj.weight[k] = 0
    texts = [h.format_prompt(t) for t in HARMLESS]
    base = first_token_logits(h, texts)
    axis = torch.eye(h.d_model)
    never = first_token_logits(h, texts, steering.ablate_hooks(axis[k], h.n_layers))
    assert mean_kl(base, never) == pytest.approx(0.0, abs=1e-9)
    torch.testing.assert_close(never, base, rtol=0, atol=1e-5)
    carried = first_token_logits(h, texts, steering.ablate_hooks(axis[k + 1], h.n_layers))
    assert mean_kl(base, carried) > 1e-4  # a direction the stream carries changes the output


def test_directions_file_round_trips(tmp_path, handle, selected):
    p = save_directions(tmp_path / "directions.h5", selected)
    d = load_directions(p, handle)
    np.testing.assert_array_equal(d.mean_harmful, selected.mean_harmful)
    np.testing.assert_array_equal(d.mean_harmless, selected.mean_harmless)
    assert d.selected == selected.selected and d.positions == "post-instruction"
    assert d.site == "resid_pre" and d.n_post == selected.n_post
    assert d.attrs["kl_threshold"] == 0.5
    np.testing.assert_array_equal(d.selected_direction(), selected.selected_direction())
    for k, v in selected.metrics.items():
        np.testing.assert_array_equal(d.metrics[k], v)
    import h5py

    with h5py.File(p) as f:
        assert f["direction"].shape == (handle.d_model,) and f["mean_harmful"].dtype == np.float64
    with pytest.raises(UserError, match="not overwriting"):
        save_directions(p, selected)


def test_bad_files_are_one_line_errors(tmp_path, handle, selected):
    p = save_directions(tmp_path / "d.h5", selected)
    with pytest.raises(UserError, match="another model"):
        load_directions(p, tiny_handle("qwen2", seed=4))
    with pytest.raises(UserError, match="does not fit"):
        load_directions(p, ModelHandle(*_wider(), "wide", source="x"))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(UserError, match="not a readable directions file"):
        load_directions(bad)
    with pytest.raises(UserError, match="no directions file"):
        load_directions(tmp_path / "missing.h5")


def _wider():
    from transformers import AutoModelForCausalLM

    from refusalscope.models.tiny import tiny_config, tiny_tokenizer

    tok = tiny_tokenizer()
    cfg = tiny_config("qwen2", len(tok), hidden_size=32, num_hidden_layers=2)
    return AutoModelForCausalLM.from_config(cfg).eval(), tok


def test_candidate_layers_option_and_bad_layer(handle):
    d = compute_directions(handle, HARMFUL[:2], HARMLESS[:2], kind="last")
    select_direction(handle, d, HARMFUL[2:3], HARMLESS[2:3], SelectConfig(layers=(1,)))
    assert d.selected[0] == 1
    assert np.isnan(d.metrics["bypass"][d.metrics["layer"] != 1]).all()
    with pytest.raises(UserError, match="out of range"):
        select_direction(handle, d, HARMFUL[2:3], HARMLESS[2:3], SelectConfig(layers=(7,)))
    assert SelectConfig.from_dict(SelectConfig(layers=(1, 2)).to_dict()) == SelectConfig(layers=(1, 2))


def test_iter_activations_sees_interventions(handle):
    from refusalscope.interp import steering

    texts = [handle.format_prompt(HARMFUL[0])]
    v = torch.ones(handle.d_model, dtype=torch.float64)
    (a0, _), = iter_activations(handle, texts, kind="last", n_post=1)
    (a1, _), = iter_activations(handle, texts, kind="last", n_post=1,
                                interventions=steering.add_hooks(v, 2.0, [1]))
    torch.testing.assert_close(a1[0, 1, 0] - a0[0, 1, 0], 2.0 * v, atol=1e-5, rtol=0)
    torch.testing.assert_close(a1[0, 0], a0[0, 0])


def test_base_model_directions_apply_to_an_adapter_over_it(tmp_path, handle, selected):
    from peft import LoraConfig, get_peft_model

    from refusalscope.models.tiny import tiny_model

    p = save_directions(tmp_path / "d.h5", selected)
    model, tok = tiny_model("qwen2", seed=3)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    with_adapter = ModelHandle(peft_model, tok, "tiny-lora", adapter=str(tmp_path / "run/adapter"))
    assert load_directions(p, with_adapter).selected == selected.selected
    other, tok = tiny_model("qwen2", seed=8)
    on_other = ModelHandle(get_peft_model(other, LoraConfig(r=2, target_modules=["q_proj"])), tok,
                           "tiny-lora", adapter=str(tmp_path / "run/adapter"))
    with pytest.raises(UserError, match="another model"):
        load_directions(p, on_other)


def test_layer_cut_is_the_references():
    """The reference discards `layer >= int(0.8 n)`: 24 layers keep 0..18 (ceil kept 0..19),
    28 keep 0..21, and a 4-layer model keeps 0..2."""
    assert [layer_cut(n, 0.8) for n in (24, 28, 32, 4, 5)] == [19, 22, 25, 3, 4]
    assert layer_cut(10, 1.0) == 10 and layer_cut(3, 0.5) == 1


def test_selection_skips_the_layer_ceil_kept(handle, selected):
    """The tiny model has 3 layers: int(2.4) = 2, so layer 2 is never scored (ceil kept it)."""
    m = selected.metrics
    assert handle.n_layers == 3 and selected.attrs["layer_cut"] == 2 and selected.selected[0] < 2
    assert np.isnan(m["bypass"][m["layer"] == 2]).all()
    assert not np.isnan(m["bypass"][m["layer"] == 1]).any()


def test_filter_by_refusal_hand_computed():
    """Harmful kept when its baseline refusal score is > 0, harmless when < 0 (0 is dropped
    from both, as the reference's strict comparisons do)."""
    h, hl = ["h0", "h1", "h2", "h3"], ["l0", "l1", "l2"]
    kh, kl, counts = filter_by_refusal(h, hl, [1.2, -0.3, 0.0, 2.0], [-1.0, 0.5, -0.1], 2)
    assert kh == ["h0", "h3"] and kl == ["l0", "l2"]
    assert counts == {"harmful": {"kept": 2, "dropped": 2, "unfiltered": False},
                      "harmless": {"kept": 2, "dropped": 1, "unfiltered": False}}
    # a class that would fall below the minimum stays whole and says so
    kh, kl, counts = filter_by_refusal(h, hl, [-1.0, -2.0, 3.0, 0.0], [0.0, 0.1, -4.0], 2)
    assert kh == h and counts["harmful"] == {"kept": 4, "dropped": 0, "unfiltered": True}
    assert kl == hl and counts["harmless"]["unfiltered"]


def test_sweep_filters_prompts_and_records_counts(tiny_folder):
    """run_sweep scores every prompt once, drops by the rule and writes the counts; checked
    against scores computed here prompt by prompt (no padding)."""
    from probe_fixtures import write_built
    from refusalscope.interp.sweep import run_sweep
    from refusalscope.interp.select import REFUSAL_WORDS

    write_built()
    run = run_sweep(model=str(tiny_folder), n=3, n_val=2, positions="last", kl_threshold=0.5,
                    device="cpu")
    got = run.manifest.extra["prompt_filter"]
    h = ModelHandle.load(str(tiny_folder))
    ids = refusal_token_ids(h.tokenizer, REFUSAL_WORDS)
    from probe_fixtures import HARMFUL as PH, HARMLESS as PL

    def scores(texts):
        out = []
        for t in texts:
            enc = h.tokenizer([h.format_prompt(t)], return_tensors="pt", add_special_tokens=False)
            with torch.no_grad():
                out.append(h.model(**enc).logits[0, -1])
        return refusal_scores(torch.stack(out), ids)

    for part, sl, minimum in (("train", slice(0, 3), 2), ("val", slice(3, 5), 1)):
        for cls, texts, keep in (("harmful", PH, lambda x: x > 0), ("harmless", PL, lambda x: x < 0)):
            n_keep = int(sum(keep(x) for x in scores(texts[sl])))
            size = sl.stop - sl.start
            want = ({"kept": size, "dropped": 0, "unfiltered": True} if n_keep < minimum else
                    {"kept": n_keep, "dropped": size - n_keep, "unfiltered": False})
            assert got[part][cls] == want, (part, cls)
    d = load_directions(run.file("directions.h5"), h)
    assert d.n_harmful == got["train"]["harmful"]["kept"]
    assert d.n_harmless == got["train"]["harmless"]["kept"]
