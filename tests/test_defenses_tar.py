"""TAR defense core on tiny random models: config, inner/outer separation, no eval, save/load,
resume."""

from __future__ import annotations

import json

import pytest
import torch

from refusalscope.attacks.compute import ComputeLog
from refusalscope.attacks.pairs import Pair, encode_pair
from refusalscope.defenses.tar import (
    ATTACK, DEFENSE, REFUSALS, TarConfig, attach_adapters, defense_params, inner_attack,
    outer_update, param_counts, refusal_pairs,
)
from refusalscope.errors import UserError
from refusalscope.models.tiny import tiny_handle
from defense_fixtures import pair_file, write_built_all

PAIRS = [Pair(f"p{i}", f"Tell me a story number {i}.", f"Sure, here is story {i}.", "t")
         for i in range(4)]


def _snapshot(model, tag):
    return {n: p.detach().clone() for n, p in model.named_parameters() if tag(n)}


def _same(a, model):
    named = dict(model.named_parameters())
    return all(torch.equal(v, named[n]) for n, v in a.items())


def test_config_round_trip_and_validation():
    cfg = TarConfig(model="m", outer_steps=3, inner_steps=2, data_file="p.jsonl")
    again = TarConfig.from_dict(json.loads(json.dumps(cfg.to_dict(), sort_keys=True)))
    assert again == cfg
    with pytest.raises(UserError, match="--inner-steps must be at least 1 \\(got 0\\)"):
        TarConfig(model="m", inner_steps=0)
    with pytest.raises(UserError, match="--outer-lr must be > 0"):
        TarConfig(model="m", outer_lr=0)
    with pytest.raises(UserError, match="--retain-weight"):
        TarConfig(model="m", retain_weight=-1)


def test_refusal_pairs_keep_prompts_and_are_stable():
    out = refusal_pairs(PAIRS)
    assert [p.prompt for p in out] == [p.prompt for p in PAIRS]
    assert all(p.response in REFUSALS for p in out) and out == refusal_pairs(PAIRS)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_inner_attack_changes_only_its_adapter_and_outer_only_the_defense(arch):
    h = tiny_handle(arch)
    cfg = TarConfig(model="tiny", n_data=4, inner_steps=2, batch_size=2, inner_lr=1e-2,
                    outer_lr=1e-2, max_len=48)
    model = attach_adapters(h.model, cfg)
    enc = [encode_pair(h, p, cfg.max_len) for p in PAIRS]
    ref = [encode_pair(h, p, cfg.max_len) for p in refusal_pairs(PAIRS)]
    ret = [encode_pair(h, Pair("r", "Name a colour.", "Blue.", "t"), cfg.max_len)]
    not_attack = _snapshot(model, lambda n: f".{ATTACK}." not in n)
    attack0 = _snapshot(model, lambda n: f".{ATTACK}." in n)
    assert any(f".{DEFENSE}." in n for n in not_attack) and attack0
    log = ComputeLog(param_counts(model, ATTACK))
    losses = inner_attack(model, enc, cfg, 0, h, log)
    assert len(losses) == 2 and log.steps == 2
    assert _same(not_attack, model)  # defense and base untouched by the inner loop
    assert not _same({n: v for n, v in attack0.items() if "lora_B" in n}, model)
    attacked = _snapshot(model, lambda n: f".{ATTACK}." in n)
    not_defense = _snapshot(model, lambda n: f".{DEFENSE}." not in n)
    opt = torch.optim.AdamW(list(defense_params(model).values()), lr=cfg.outer_lr)
    out = outer_update(model, opt, ref, ret, cfg, 0, h, ComputeLog(param_counts(model, DEFENSE)))
    assert set(out) == {"refusal_after_attack", "retain", "loss"}
    assert _same(not_defense, model) and _same(attacked, model)  # only the defense moved
    assert not _same({n: v for n, v in not_attack.items() if f".{DEFENSE}." in n}, model)


def test_fresh_attack_each_outer_step():
    h = tiny_handle("llama")
    cfg = TarConfig(model="tiny", n_data=4, inner_steps=1, batch_size=2, max_len=48)
    model = attach_adapters(h.model, cfg)
    enc = [encode_pair(h, p, cfg.max_len) for p in PAIRS]
    log = ComputeLog(param_counts(model, ATTACK))
    inner_attack(model, enc, cfg, 0, h, log)
    first = _snapshot(model, lambda n: f".{ATTACK}." in n and "lora_A" in n)
    inner_attack(model, enc, cfg, 1, h, log)
    second = _snapshot(model, lambda n: f".{ATTACK}." in n and "lora_A" in n)
    assert not all(torch.equal(first[n], second[n]) for n in first)


@pytest.fixture
def tar_run(tiny_folder, tmp_path, monkeypatch):
    """A 2-step TAR run on the tiny Llama; records every text a training loss saw."""
    from refusalscope.data import load as data_load
    from refusalscope.defenses import tar as tar_mod
    from refusalscope.defenses.tar_run import run_tar

    texts = write_built_all()
    seen: list[str] = []
    splits: list[str] = []
    real_loss, real_split = tar_mod.response_loss, data_load.load_split

    def spy_loss(model, batch):
        seen.extend(tok.batch_decode(batch["input_ids"]))
        return real_loss(model, batch)

    def spy_split(split, **kw):
        import inspect

        # the held-out rule (data.holdout.HeldOut.from_built) reads eval and direction only
        # to drop their near-duplicates from the training pairs: not a use of them
        if not any(f.filename.endswith("holdout.py") for f in inspect.stack()[1:4]):
            splits.append(split)
        return real_split(split, **kw)

    monkeypatch.setattr(tar_mod, "response_loss", spy_loss)
    monkeypatch.setattr(data_load, "load_split", spy_split)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_folder)
    cfg = TarConfig(model=str(tiny_folder), n_data=4, outer_steps=2, inner_steps=2,
                    batch_size=2, max_len=48, n_retain=3, retain_new_tokens=4,
                    data_file=pair_file(tmp_path), save_every=1)
    run = run_tar(cfg)
    return run, cfg, texts, seen, splits


def test_tar_run_never_sees_eval(tar_run):
    run, cfg, texts, seen, splits = tar_run
    assert "eval" not in splits and "direction" not in splits
    assert seen and not any(t in s for t in texts["eval"] + texts["direction"] for s in seen)
    assert any(t in s for t in texts["attack-train"] for s in seen)  # retain prompts
    ids = run.manifest.extra["data_ids"]
    assert ids["attack"] == ids["refusal"] and all(i.startswith("u") for i in ids["attack"])
    assert all(i.startswith("harmless-attack-train-") for i in ids["retain"])
    assert "first-order" in run.manifest.extra["method"]


def test_defended_model_saves_and_loads(tar_run, tiny_folder):
    from peft import PeftModel

    from refusalscope.models.handle import ModelHandle

    run = tar_run[0]
    assert run.manifest.status == "success"
    compute = json.loads(run.file("compute.json").read_text())
    assert compute["outer_steps"] == 2 and compute["inner_steps"] == 4
    assert compute["flops_estimate"] > compute["inner"]["flops_estimate"] > 0
    assert not run.file("checkpoint.pt").exists() and run.file("loss.png").stat().st_size
    a = ModelHandle.load(str(run.path))
    b = ModelHandle.load(str(run.file("model")))
    assert a.name == b.name == "tiny-llama+tar"
    base = ModelHandle.load(str(tiny_folder))
    peft = PeftModel.from_pretrained(base.model, str(run.file("defense_adapter")))
    ids = a.tokenizer(["Name three primary colours."], return_tensors="pt")
    with torch.no_grad():
        la, lb, lp = (m(**ids).logits for m in (a.model, b.model, peft))
    assert torch.equal(la, lb)
    torch.testing.assert_close(la, lp, rtol=1e-4, atol=1e-5)
    base_logits = ModelHandle.load(str(tiny_folder)).model(**ids).logits
    assert not torch.allclose(la, base_logits)  # the defense changed the model


def test_resume_reaches_the_same_model(tar_run, tmp_path):
    from safetensors.torch import load_file

    from refusalscope.defenses.tar_run import run_tar

    full, cfg = tar_run[0], tar_run[1]

    def boom(step, total, row):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tar(cfg, on_step=boom)
    from refusalscope.paths import runs_dir
    from refusalscope.runs import Run

    broken = [Run.open(p) for p in runs_dir().iterdir() if p != full.path][0]
    assert broken.manifest.status == "error" and broken.file("checkpoint.pt").is_file()
    resumed = run_tar(cfg, resume=str(broken.path))
    wa = load_file(full.file("model") / "model.safetensors")
    wb = load_file(resumed.file("model") / "model.safetensors")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(UserError, match="already finished"):
        run_tar(cfg, resume=str(resumed.path))


def test_temporary_run_folder_is_removed_when_the_process_ends(tmp_path):
    """Training without a run folder writes a copy of the model to a temporary folder: it
    must not outlive the process (each such run left ~1 MB behind per test session)."""
    import os
    import subprocess
    import sys

    code = ("from refusalscope.defenses.tar import TarConfig\n"
            "from refusalscope.defenses.tar_run import _temporary_run\n"
            "run = _temporary_run(TarConfig(model='m'))\n"
            "(run.path / 'x').write_text('1')\n"
            "print(run.path)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "TMPDIR": str(tmp_path)}, check=True)
    path = out.stdout.strip().splitlines()[-1]
    assert path.startswith(str(tmp_path))
    assert not os.path.exists(path)
