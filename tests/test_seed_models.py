"""The seed study's models (phi-2 / phi-1.5, Ministral-3-3B, Llama-2-7B/13B-chat) load and work.

Each is stood in for by a tiny random-weight checkpoint of its exact architecture in the hub's
folder layout (`seed_checkpoints`), loaded by `ModelHandle.load(folder)`, the path a hub id's
snapshot takes. Checked: the mistral3 checkpoint loads as its language model only (no vision
tensors, FP8 dequantized, both tensor-name layouts) with logits equal to transformers' own full
image-text model; chat formatting (phi: the fallback, with its warning); our generation loop
equals transformers' greedy `generate`; every named site sits where its definition says; LoRA
targets and trains; GCG's cached losses and gradients equal the uncached reference; steering
and hook ablation act, and weight orthogonalisation equals hook ablation where supported.
The design card's own commands, run verbatim against the folders, are in
`test_seed_models_cli.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from seed_checkpoints import SEED_ARCHS, dequantized_reference, write_checkpoint

from refusalscope.models.handle import ModelHandle

IDS = torch.tensor([[1, 5, 7, 9, 20, 33, 41, 2]])


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("seed")
    return {arch: write_checkpoint(arch, root / arch) for arch in SEED_ARCHS}


@pytest.fixture(scope="module")
def handles(folders: dict[str, Path]) -> dict[str, ModelHandle]:
    return {arch: ModelHandle.load(str(f)) for arch, f in folders.items()}


@pytest.mark.parametrize("layout, fp8", [("language_model.model", True),
                                         ("model.language_model", False)])
def test_mistral3_loads_its_language_model_only(tmp_path: Path, layout: str, fp8: bool) -> None:
    folder = write_checkpoint("mistral3", tmp_path / "m3", layout=layout, fp8=fp8, seed=1)
    h = ModelHandle.load(str(folder))
    assert type(h.base_model).__name__ == "Ministral3ForCausalLM"
    assert h.config.model_type == "ministral3" and (h.n_layers, h.d_model) == (3, 64)
    assert not [n for n, _ in h.model.named_parameters() if "vision" in n or "projector" in n]
    assert h.model.lm_head.weight is h.model.model.embed_tokens.weight  # tied, as released
    assert all(p.dtype == torch.float32 for p in h.model.parameters())  # FP8 dequantized
    full = dequantized_reference(folder)
    text_params = sum(p.numel() for n, p in full.named_parameters() if "language_model" in n)
    assert h.n_params() == text_params < sum(p.numel() for p in full.parameters())
    with torch.no_grad():
        assert torch.equal(h.model(IDS).logits, full(input_ids=IDS).logits)


def test_mistral3_missing_tensor_is_one_line_error(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    from refusalscope.errors import UserError

    folder = write_checkpoint("mistral3", tmp_path / "m3", fp8=False)
    w = load_file(folder / "model.safetensors")
    del w["language_model.model.norm.weight"]
    save_file(w, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(UserError, match="lacks 1 language-model tensors"):
        ModelHandle.load(str(folder))


def test_model_sizes_of_a_mistral3_config_count_the_text_model(folders, handles) -> None:
    from transformers import AutoConfig

    from refusalscope.models.pull import describe
    from refusalscope.models.registry import model_sizes

    sizes = model_sizes(AutoConfig.from_pretrained(folders["mistral3"]))
    assert sizes.released == handles["mistral3"].n_params() and sizes.tied
    facts = describe(str(folders["mistral3"]))  # `models info DIR`: what the folder stores
    full = dequantized_reference(folders["mistral3"])
    assert (facts["layers"], facts["d_model"]) == (3, 64)
    fp8_scales = 2 * 7 * 3  # weight_scale_inv + activation_scale of 7 linears in 3 layers
    assert facts["params"] == sum(p.numel() for p in full.parameters()) + fp8_scales


def test_chat_formatting(folders, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="refusalscope.models.handle"):
        phi = ModelHandle.load(str(folders["phi"]))
    assert "no chat template" in caplog.text  # base model: announced
    assert phi.format_prompt("hi") == "### Instruction:\nhi\n\n### Response:\n"
    assert phi.tokenizer.pad_token == "<|endoftext|>"  # phi ships none: eos stands in
    llama = ModelHandle.load(str(folders["llama"]))
    assert llama.format_prompt("hi", system="Be safe.") == \
        "<s>[INST] <<SYS>>\nBe safe.\n<</SYS>>\n\nhi [/INST]"
    m3 = ModelHandle.load(str(folders["mistral3"]))  # template from chat_template.jinja
    assert m3.format_prompt("hi") == "<s>[INST]hi[/INST]"


@pytest.mark.parametrize("arch", SEED_ARCHS)
def test_generation_equals_transformers_greedy(handles, arch: str) -> None:
    from refusalscope.generation import GenerateConfig, generate_batch

    h = handles[arch]
    texts = [h.format_prompt(p) for p in ("Write a poem about the sea.", "hello")]
    rows = generate_batch(h, texts, GenerateConfig(model=arch, max_new_tokens=6))
    enc = h.tokenizer(texts, return_tensors="pt", padding=True,
                      add_special_tokens=not h.has_chat_template)
    with torch.no_grad():
        ref = h.model.generate(**enc, max_new_tokens=6, do_sample=False)
    for row, seq in zip(rows, ref[:, enc["input_ids"].shape[1]:], strict=True):
        tokens = [t for t in seq.tolist() if t != h.tokenizer.pad_token_id]
        assert row["response"] == h.tokenizer.decode(tokens, skip_special_tokens=True)
        assert row["new_tokens"] >= 1


def _capture(h: ModelHandle) -> dict[str, torch.Tensor]:
    from refusalscope.models.sites import SITE_KINDS, site_name

    got: dict[str, torch.Tensor] = {}

    def keep(x, site):  # type: ignore[no-untyped-def]
        got[site.name] = x.detach().clone()

    kinds = [k for k in SITE_KINDS if not (h.family.parallel and k == "resid_mid")]
    hooks = [(site_name(layer, k), keep) for layer in range(h.n_layers) for k in kinds]
    with torch.no_grad(), h.hooks(hooks):
        h.model(IDS)
    return got


@pytest.mark.parametrize("arch", SEED_ARCHS)
def test_named_sites_sit_where_defined(handles, arch: str) -> None:
    h = handles[arch]
    a = _capture(h)
    for L in range(h.n_layers):
        pre, post = a[f"blocks.{L}.hook_resid_pre"], a[f"blocks.{L}.hook_resid_post"]
        attn, mlp = a[f"blocks.{L}.hook_attn_out"], a[f"blocks.{L}.hook_mlp_out"]
        assert pre.shape == (1, IDS.shape[1], h.d_model)
        if h.family.parallel:  # phi: x + attn(ln x) + mlp(ln x)
            assert torch.allclose(post, pre + attn + mlp, atol=1e-5)
        else:
            mid = a[f"blocks.{L}.hook_resid_mid"]
            assert torch.allclose(mid, pre + attn, atol=1e-5)
            assert torch.allclose(post, mid + mlp, atol=1e-5)
        if L + 1 < h.n_layers:
            assert torch.equal(post, a[f"blocks.{L + 1}.hook_resid_pre"])
    assert torch.equal(_capture(h)["blocks.0.hook_resid_pre"], a["blocks.0.hook_resid_pre"])


@pytest.mark.parametrize("arch, targets", [("phi", {"q_proj", "k_proj", "v_proj", "dense"}),
                                           ("llama", {"q_proj", "k_proj", "v_proj", "o_proj"}),
                                           ("mistral3", {"q_proj", "k_proj", "v_proj", "o_proj"})])
def test_lora_targets_and_trains(folders, arch: str, targets: set[str]) -> None:
    from refusalscope.attacks.lora import LoraAttackConfig, attach_lora, response_loss

    h = ModelHandle.load(str(folders[arch]))  # its own copy: peft wraps modules in place
    model = attach_lora(h.model, LoraAttackConfig(model=arch))
    wrapped = {n.split(".")[-4] for n, _ in model.named_parameters() if "lora_A" in n}
    assert wrapped == targets
    ids = IDS.repeat(2, 1)
    labels = ids.clone()
    labels[:, :4] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(3):
        loss = response_loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("arch", SEED_ARCHS)
def test_gcg_losses_and_gradient_equal_reference(handles, arch: str) -> None:
    from refusalscope.attacks.gcg import GCGConfig, initial_suffix
    from refusalscope.attacks.gcg_loss import (PrefixCache, build_slots, candidate_losses,
                                               reference_losses, suffix_gradient)

    h = handles[arch]
    ids = initial_suffix(h.tokenizer, GCGConfig(suffix_len=5))
    slots = build_slots(h, "Write a short poem about the sea", "Sure, here is a poem", ids)
    cache = PrefixCache(h.model, slots.prefix, h.config)
    cands = torch.randint(8, len(h.tokenizer), (6, len(ids)),
                          generator=torch.Generator().manual_seed(0))
    ref = reference_losses(h.model, slots, cands)
    ours, _ = candidate_losses(h.model, slots, cache, cands, None)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0) and ref.std() > 1e-4
    w = h.model.get_input_embeddings().weight.detach()
    g1, l1 = suffix_gradient(h.model, slots, cache, torch.tensor(ids), w)
    g2, l2 = suffix_gradient(h.model, slots, None, torch.tensor(ids), w)
    assert g1.shape == (len(ids), w.shape[0]) and g1.abs().sum() > 0
    assert l1 == pytest.approx(l2, abs=1e-5) and torch.allclose(g1, g2, atol=1e-6)


@pytest.mark.parametrize("arch", SEED_ARCHS)
def test_steering_and_ablation(folders, handles, arch: str, tmp_path: Path) -> None:
    from refusalscope.interp import steering

    h = handles[arch]
    r = torch.randn(h.d_model, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = h.model(IDS).logits
        with h.hooks(steering.add_hooks(r, 4.0, [1])):
            steered = h.model(IDS).logits
        assert (steered - plain).abs().max() > 1e-3
        hooks = steering.ablate_hooks(r, h.n_layers, parallel=h.family.parallel)
        with h.hooks(hooks):
            ablated = h.model(IDS).logits
            seen = _capture(h)  # installed after the ablation: sees the ablated stream
    unit = r / r.norm()
    for name in (f"blocks.{h.n_layers - 1}.hook_resid_post", "blocks.1.hook_resid_pre"):
        assert (seen[name] @ unit).abs().max() < 1e-5
    assert (ablated - plain).abs().max() > 1e-4
    fresh = ModelHandle.load(str(folders[arch]))
    steering.orthogonalize(fresh, r)  # phi too: its parallel block's writes are plain linears
    with torch.no_grad():
        assert torch.allclose(fresh.model(IDS).logits, ablated, atol=1e-4)
    saved = ModelHandle.load(str(steering.save_orthogonalized(fresh, tmp_path / "o", {})))
    with torch.no_grad():  # mistral3: saved and reloaded as its text model
        assert torch.allclose(saved.model(IDS).logits, ablated, atol=1e-4)


@pytest.mark.parametrize("name, arch, cls", [("mistral-3b", "mistral3", "Ministral3ForCausalLM"),
                                             ("phi-2", "phi", "PhiForCausalLM"),
                                             ("llama-7b", "llama", "LlamaForCausalLM")])
def test_registry_name_loads_from_the_hub_cache(name: str, arch: str, cls: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry name resolves to its hub id, which loads offline from the HF cache: the
    path a user with the hub takes, with the tiny stand-in as the cached snapshot."""
    from huggingface_hub import constants

    from refusalscope.models.pull import describe
    from refusalscope.models.registry import get

    hub_id = get(name).hub_id
    assert hub_id is not None
    repo = tmp_path / "hub" / ("models--" + hub_id.replace("/", "--"))
    rev = "0123456789abcdef0123456789abcdef01234567"
    write_checkpoint(arch, repo / "snapshots" / rev)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    h = ModelHandle.load(name)
    assert type(h.base_model).__name__ == cls and h.source == f"hub:{hub_id}"
    facts = describe(name)
    assert facts["pulled"] and facts["layers"] == h.n_layers == 3
    with torch.no_grad():
        assert h.model(IDS).logits.shape == (1, IDS.shape[1], len(h.tokenizer))
