"""ModelHandle loading: local folders, peft adapters, runtime options."""

from __future__ import annotations

import pytest
import torch

from refusalscope.errors import UserError
from refusalscope.models.handle import ModelHandle, RuntimeOptions


def _logits(h):
    enc = h.tokenizer(["Write a short poem"], return_tensors="pt")
    with torch.no_grad():
        return h.model(**enc).logits


@pytest.fixture
def adapter_dir(tiny_folder, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_folder)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.add_(0.5)  # B starts at zero: make the adapter change outputs
    run = tmp_path / "attack-run"
    peft_model.save_pretrained(run / "adapter")
    return run


def test_load_folder_and_adapter(tiny_folder, adapter_dir):
    plain = ModelHandle.load(str(tiny_folder))
    assert plain.n_layers == 3 and plain.d_model == 64 and plain.has_chat_template
    assert plain.tokenizer.padding_side == "left"
    assert plain.model.dtype == torch.float32 and not plain.model.training
    tuned = ModelHandle.load(str(tiny_folder), adapter=adapter_dir)  # a run folder holding adapter/
    assert tuned.adapter.endswith("adapter") and tuned.n_layers == 3
    assert not torch.allclose(_logits(plain), _logits(tuned))
    seen = {}

    def record(x, site):
        seen[site.name] = x.shape  # returns None: read-only

    with tuned.hooks([("blocks.2.hook_resid_post", record)]):
        _logits(tuned)
    assert seen["blocks.2.hook_resid_post"][-1] == 64


def test_bad_adapter_and_dtype(tiny_folder, tmp_path):
    with pytest.raises(UserError, match="no peft adapter"):
        ModelHandle.load(str(tiny_folder), adapter=tmp_path)
    with pytest.raises(UserError, match="unknown dtype"):
        RuntimeOptions(dtype="fp8").resolved_dtype()
    assert RuntimeOptions(device="cpu").resolved_dtype() == torch.float32
    h = ModelHandle.load(str(tiny_folder), options=RuntimeOptions(device="cpu", dtype="bfloat16"))
    assert h.model.dtype == torch.bfloat16


def test_unknown_family_is_a_user_error():
    from refusalscope.models.sites import family_for

    with pytest.raises(UserError, match="no site table"):
        family_for("gpt_neox_custom")
