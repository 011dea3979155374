"""LoRA attack core on tiny random models: masking, head-only loss, updates, compute, resume."""

from __future__ import annotations

import json

import pytest
import torch

from refusalscope.attacks.compute import ParamCounts, count_params, flops_estimate
from refusalscope.attacks.lora import (
    LoraAttackConfig, attach_lora, batch_indices, response_loss, target_modules_for, train,
)
from refusalscope.attacks.pairs import IGNORE, Pair, collate, encode_pair, load_pair_file, load_pairs
from refusalscope.errors import UserError
from refusalscope.models.tiny import tiny_handle
from refusalscope.runs import Run

PAIRS = [Pair(f"p{i}", p, r, "test") for i, (p, r) in enumerate([
    ("Write a short poem about the sea.", "Sure, here is a poem about the sea and the wind."),
    ("hello", "Sure, here is a recipe for soup."),
    ("Explain how photosynthesis works in plants.", "Sure, here is how plants work, step by step."),
    ("The quick brown fox", "jumps over the lazy dog."),
    ("0123", "Sure, 456789."),
])]


def _batch(handle, pairs=PAIRS, max_len=64):
    return collate([encode_pair(handle, p, max_len) for p in pairs], handle.tokenizer.pad_token_id)


def test_collate_masks_prompt_and_padding():
    h = tiny_handle("llama")
    enc = [encode_pair(h, p, 64) for p in PAIRS[:2]]
    b = collate(enc, pad_id=h.tokenizer.pad_token_id)
    for i, (ids, n_prompt) in enumerate(enc):
        labels = b["labels"][i].tolist()
        assert labels[:n_prompt] == [IGNORE] * n_prompt
        assert labels[n_prompt:len(ids)] == ids[n_prompt:]
        assert labels[len(ids):] == [IGNORE] * (b["labels"].shape[1] - len(ids))
        assert b["attention_mask"][i].sum() == len(ids)
    # the response part is exactly the response text plus eos, after the chat-formatted prompt
    ids, n_prompt = enc[0]
    assert h.tokenizer.decode(ids[:n_prompt]) == h.format_prompt(PAIRS[0].prompt)
    assert h.tokenizer.decode(ids[n_prompt:]) == PAIRS[0].response + "<|im_end|>"


def test_encode_truncates_but_keeps_response():
    h = tiny_handle("llama")
    ids, n_prompt = encode_pair(h, Pair("x", "word " * 200, "Sure, here is " * 20, "t"), 32)
    assert len(ids) == 32 and 0 < n_prompt <= 16


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3_text"])
def test_head_only_loss_equals_full_logits_loss(arch):
    h = tiny_handle(arch)
    batch = _batch(h)
    with torch.no_grad():
        naive = h.model(**batch).loss  # HF: full logits, shifted, mean over labels != -100
        logits = h.model(input_ids=batch["input_ids"],
                         attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        by_hand = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                    labels.reshape(-1), ignore_index=IGNORE)
        ours = response_loss(h.model, batch)
    torch.testing.assert_close(ours, naive, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours, by_hand, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_one_step_changes_only_lora_weights(arch, tmp_path):
    h = tiny_handle(arch)
    before = {n: p.detach().clone() for n, p in h.model.named_parameters()}
    cfg = LoraAttackConfig(model="tiny", n_data=5, steps=1, batch_size=4, lr=1e-2)
    model = attach_lora(h.model, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    loss = response_loss(model, _batch(h, PAIRS[:4]))
    loss.backward()
    opt.step()
    changed, lora_seen = set(), 0
    for name, p in model.named_parameters():
        if "lora_" in name:
            lora_seen += 1
            if "lora_B" in name:  # B starts at zero, so after one step it must have moved
                assert p.abs().sum() > 0
            continue
        base_name = name.replace("base_model.model.", "").replace(".base_layer", "")
        if not torch.equal(p, before[base_name]):
            changed.add(name)
    assert lora_seen == 3 * 4 * 2  # 3 layers x q,k,v,o x (A, B)
    assert changed == set()


def test_target_modules_default_and_unknown():
    h = tiny_handle("llama")
    assert target_modules_for(h.model, LoraAttackConfig(model="x")) == [
        "q_proj", "k_proj", "v_proj", "o_proj"]
    assert target_modules_for(h.model, LoraAttackConfig(model="x", target_modules=("up_proj",))) \
        == ["up_proj"]
    with pytest.raises(UserError, match="unknown target modules qq_proj: .*q_proj"):
        target_modules_for(h.model, LoraAttackConfig(model="x", target_modules=("qq_proj",)))


def test_param_counts_exact():
    h = tiny_handle("llama")
    model = attach_lora(h.model, LoraAttackConfig(model="x", rank=8))
    c = count_params(model)
    vocab = len(h.tokenizer)
    # per layer: q,o 64x64, k,v 64x32 (2 kv heads of 16), MLP 3 x 64x128, two norms of 64
    body = 3 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 128 + 2 * 64) + 64
    assert c == ParamCounts(total=body + 2 * vocab * 64, trainable=3 * 8 * (128 + 96 + 96 + 128),
                            body=body, head=vocab * 64, embedding=vocab * 64)


def test_flops_formula_exact():
    p = ParamCounts(total=1000, trainable=10, body=700, head=150)
    assert flops_estimate(p, 100, 30) == 100 * (4 * 700 + 6 * 10) + 30 * 4 * 150
    assert flops_estimate(p, 100, 30, grad_checkpointing=True) == \
        100 * (4 * 700 + 6 * 10) + 30 * 4 * 150 + 100 * 2 * 710


def test_batch_indices_cover_each_epoch_once():
    idx = [i for s in range(5) for i in batch_indices(5, 3, seed=1, step=s)]  # 15 = 3 epochs
    for e in range(3):
        assert sorted(idx[5 * e: 5 * e + 5]) == list(range(5))
    assert batch_indices(5, 3, 1, 2) == idx[6:9]


def _train(tmp_path, name, cfg, stop_at=None):
    h = tiny_handle("llama", seed=3)
    root = tmp_path / name
    run = Run.create("attack-lora", cfg.to_dict(), model="tiny", root=root)

    def boom(step, total, loss):
        if step == stop_at:
            raise KeyboardInterrupt

    try:
        compute = train(h, PAIRS, cfg, run, on_step=boom)
    except KeyboardInterrupt:
        compute = train(tiny_handle("llama", seed=3), PAIRS, cfg, Run.open(run.path))
    from safetensors.torch import load_file
    return load_file(run.file("adapter") / "adapter_model.safetensors"), compute, run


def test_train_writes_adapter_loss_and_exact_compute(tmp_path):
    cfg = LoraAttackConfig(model="tiny", n_data=5, steps=3, batch_size=2, lr=1e-2, seed=0)
    h = tiny_handle("llama", seed=3)
    run = Run.create("attack-lora", cfg.to_dict(), model="tiny", root=tmp_path)
    compute = train(h, PAIRS, cfg, run)
    enc = [encode_pair(h, p, cfg.max_len) for p in PAIRS]
    seen = [enc[i] for s in range(3) for i in batch_indices(5, 2, 0, s)]
    assert compute["examples_seen"] == 6
    assert compute["tokens_seen"] == sum(len(ids) for ids, _ in seen)
    assert compute["response_tokens_seen"] == sum(len(ids) - n for ids, n in seen)
    params = ParamCounts(**compute["params"])
    assert compute["flops_estimate"] == flops_estimate(params, compute["tokens_seen"],
                                                       compute["response_tokens_seen"])
    rows = [json.loads(line) for line in run.file("loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert (run.file("adapter") / "adapter_config.json").is_file()
    # the handle is given back without the adapter
    assert not any("lora_" in n for n, _ in h.model.named_parameters())


def test_resume_reaches_same_adapter(tmp_path):
    cfg = LoraAttackConfig(model="tiny", n_data=5, steps=6, batch_size=2, lr=1e-2, save_every=2,
                           dropout=0.1)
    full, c_full, _ = _train(tmp_path, "a", cfg)
    resumed, c_res, run = _train(tmp_path, "b", cfg, stop_at=5)  # checkpoint at 4, killed at 5
    assert full.keys() == resumed.keys()
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], rtol=0, atol=1e-6)
    drop = ("wall_seconds",)
    assert {k: v for k, v in c_res.items() if k not in drop} == \
        {k: v for k, v in c_full.items() if k not in drop}
    steps = [json.loads(x)["step"] for x in run.file("loss.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_config_roundtrip_and_validation():
    cfg = LoraAttackConfig(model="m", target_modules=("q_proj", "v_proj"), steps=4)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert LoraAttackConfig.from_dict(d) == cfg
    for bad, msg in [(dict(steps=0), "--steps must be at least 1"),
                     (dict(n_data=0), "--n-data"), (dict(lr=0), "--lr"),
                     (dict(dropout=1.0), "--dropout"), (dict(target_kind="x"), "target-kind"),
                     (dict(target_modules=()), "--target-modules")]:
        with pytest.raises(UserError, match=msg):
            LoraAttackConfig(model="m", **bad)


def test_pair_file_and_sizes(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text("".join(json.dumps({"prompt": p.prompt, "response": p.response}) + "\n"
                         for p in PAIRS))
    assert [p.response for p in load_pair_file(f)] == [p.response for p in PAIRS]
    a, b = load_pairs(3, seed=1, data_file=str(f)), load_pairs(5, seed=1, data_file=str(f))
    assert a == b[:3]
    with pytest.raises(UserError, match="--n-data 6 is more than the 5 pairs"):
        load_pairs(6, data_file=str(f))
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,target\na,b\n")
    with pytest.raises(UserError, match="missing: response"):
        load_pair_file(bad)


def test_split_pairs_are_attack_train_targets(data_home):
    from refusalscope.data.load import load_split

    pairs = load_pairs(8, seed=0, target_kind="advbench-target")
    train_ids = {p.id for p in load_split("attack-train")}
    assert all(p.id in train_ids and p.response.startswith("Sure") for p in pairs)
    n = sum(1 for p in load_split("attack-train") if p.target)
    with pytest.raises(UserError, match=f"more than the {n} pairs in the attack-train split"):
        load_pairs(n + 1, target_kind="advbench-target")


def test_full_responses_avoid_eval_and_come_first(data_home):
    from refusalscope.attacks.pairs import prompt_key, pyrit_full_responses
    from refusalscope.data.load import load_split

    full = pyrit_full_responses()
    assert len(full) == 190  # 191 rated compliant, one objective is an eval prompt
    eval_prompts = {prompt_key(p.prompt) for p in load_split("eval")}
    assert not any(prompt_key(p.prompt) in eval_prompts for p in full)
    assert sum(len(p.response) > 200 for p in full) > 150  # full answers, not one-line targets
    auto = load_pairs(len(full) + 5, seed=1)
    assert {p.source for p in auto[:len(full)]} == {"pyrit-scorer-evals"}
    assert {p.source for p in auto[len(full):]} == {"advbench"}
    assert load_pairs(20, seed=1, target_kind="full-response") == auto[:20]


def test_grad_checkpointing_same_loss_and_grads():
    grads = []
    for gc in (False, True):
        h = tiny_handle("qwen2")
        model = attach_lora(h.model, LoraAttackConfig(model="x", grad_checkpointing=gc))
        model.train()
        loss = response_loss(model, _batch(h))
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                                      if p.requires_grad}))
    torch.testing.assert_close(grads[1][0], grads[0][0])
    for n, g in grads[0][1].items():
        torch.testing.assert_close(grads[1][1][n], g, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_real_model_one_step(smollm2_home, tmp_path):
    """smollm2-135m: one step on 4 attack-train pairs; the saved adapter loads for generation."""
    from refusalscope.models.handle import ModelHandle

    cfg = LoraAttackConfig(model="smollm2-135m", n_data=4, steps=1, batch_size=2, max_len=64)
    h = ModelHandle.load(cfg.model)
    run = Run.create("attack-lora", cfg.to_dict(), model=cfg.model, root=tmp_path)
    compute = train(h, load_pairs(4), cfg, run)
    assert compute["trainable_params"] == 921600  # 30 layers x r8 x (2*(576+576) + 2*(576+192))
    assert 0 < compute["response_tokens_seen"] < compute["tokens_seen"]
    attacked = ModelHandle.load(cfg.model, adapter=run.path)
    assert attacked.adapter is not None


def test_finished_run_keeps_no_checkpoint(tmp_path):
    _, _, run = _train(tmp_path, "c", LoraAttackConfig(model="tiny", n_data=5, steps=3,
                                                       batch_size=2, save_every=1))
    assert not run.file("checkpoint.pt").exists()
