"""Tiny random-weight checkpoints of the seed study's hub models, in the hub's folder layout.

No hub access here, so each seed model is stood in for by a folder holding what its hub
snapshot holds: `config.json` with the real `model_type` / `architectures` and the release's
architectural switches, safetensors with the real tensor names, the tokenizer files and (for
chat models) the chat template. Shapes are tiny (3 layers, d_model 64). They load through the
same code path (`ModelHandle.load(folder)`) as a hub id's snapshot folder.

* `phi` — microsoft/phi-2 (and phi-1_5): `PhiForCausalLM`, partial rotary, gelu_new, biases,
  untied head; a base model: no chat template, eos `<|endoftext|>` and no pad token.
* `llama` — meta-llama/Llama-2-{7,13}b-chat-hf: `LlamaForCausalLM`, `<s>`/`</s>`, the
  `[INST] <<SYS>>` chat template, untied head.
* `mistral3` — mistralai/Ministral-3-3B-Instruct-2512: `Mistral3ForConditionalGeneration`
  with a tiny Pixtral vision tower and projector; the `ministral3` language model with YaRN
  RoPE and the Llama-4 attention scale, tied embeddings; the instruct release's per-tensor FP8
  linears (`weight_scale_inv`, `activation_scale`, `quantization_config` in config.json); the
  template in `chat_template.jinja`; and the Mistral-format `consolidated.safetensors` copy the
  hub repo carries beside the transformers one. `layout` picks the tensor-name layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SEED_ARCHS = ("phi", "llama", "mistral3")

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set sys = '<<SYS>>\\n' + messages[0]['content']"
    " + '\\n<</SYS>>\\n\\n' %}{% set messages = messages[1:] %}{% else %}{% set sys = '' %}"
    "{% endif %}{% for m in messages %}{% if m['role'] == 'user' %}{{ bos_token }}[INST] "
    "{% if loop.first %}{{ sys }}{% endif %}{{ m['content'] | trim }} [/INST]{% else %} "
    "{{ m['content'] | trim }} {{ eos_token }}{% endif %}{% endfor %}"
)
MISTRAL3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}[SYSTEM_PROMPT]"
    "{{ m['content'] }}[/SYSTEM_PROMPT]{% elif m['role'] == 'user' %}[INST]{{ m['content'] }}"
    "[/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
_SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
              tie_word_embeddings=False)


def _tokenizer(arch: str) -> Any:
    from refusalscope.models.tiny import tiny_tokenizer

    if arch == "phi":
        return tiny_tokenizer(chat_template=None, specials=("<|endoftext|>",),
                              eos="<|endoftext|>", pad=None, bos="<|endoftext|>")
    if arch == "llama":
        return tiny_tokenizer(chat_template=LLAMA2_TEMPLATE, specials=("<unk>", "<s>", "</s>"),
                              eos="</s>", pad=None, bos="<s>")
    return tiny_tokenizer(chat_template=MISTRAL3_TEMPLATE, eos="</s>", pad="<pad>", bos="<s>",
                          specials=("<unk>", "<s>", "</s>", "[INST]", "[/INST]",
                                    "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "<pad>"))


def _config(arch: str, tok: Any) -> Any:
    from transformers import AutoConfig

    ids = dict(vocab_size=len(tok), eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    if arch == "phi":
        return AutoConfig.for_model("phi", **_SMALL, **ids, num_key_value_heads=4,
                                    partial_rotary_factor=0.4, hidden_act="gelu_new",
                                    layer_norm_eps=1e-5, max_position_embeddings=2048,
                                    architectures=["PhiForCausalLM"])
    if arch == "llama":
        return AutoConfig.for_model("llama", **_SMALL, **ids, num_key_value_heads=4,
                                    rms_norm_eps=1e-5, max_position_embeddings=4096,
                                    architectures=["LlamaForCausalLM"])
    text = AutoConfig.for_model(
        "ministral3", **{**_SMALL, "tie_word_embeddings": True}, **ids, num_key_value_heads=2,
        head_dim=16, max_position_embeddings=262144, pad_token_id=tok.pad_token_id,
        rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 16.0,
                         "original_max_position_embeddings": 16384, "beta_fast": 32.0,
                         "beta_slow": 1.0, "mscale": 1.0, "mscale_all_dim": 1.0,
                         "llama_4_scaling_beta": 0.1})
    vision = AutoConfig.for_model("pixtral", hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=1, num_attention_heads=2, head_dim=16,
                                  image_size=64, patch_size=16)
    return AutoConfig.for_model("mistral3", text_config=text.to_dict(),
                                vision_config=vision.to_dict(), image_token_index=10,
                                spatial_merge_size=2, tie_word_embeddings=True,
                                architectures=["Mistral3ForConditionalGeneration"])


def write_checkpoint(arch: str, folder: Path, *, seed: int = 0, fp8: bool = True,
                     layout: str = "language_model.model") -> Path:
    """Write the tiny stand-in of seed model `arch` to `folder`; return `folder`.

    mistral3 only: `fp8` stores the language model's linears as the instruct release does;
    `layout` is ``language_model.model`` (what transformers writes) or ``model.language_model``.
    """
    import torch
    from transformers import AutoModelForCausalLM, Mistral3ForConditionalGeneration

    tok = _tokenizer(arch)
    config = _config(arch, tok)
    torch.manual_seed(seed)
    if arch == "mistral3":
        model = Mistral3ForConditionalGeneration(config)
    else:
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.bos_token_id = tok.bos_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    if arch == "mistral3":
        _hub_mistral3(Path(folder), fp8=fp8, layout=layout)
    return Path(folder)


def _hub_mistral3(folder: Path, *, fp8: bool, layout: str) -> None:
    """Rewrite a saved Mistral3 folder the way the hub repo stores it."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    out: dict[str, Any] = {}
    for key, w in weights.items():
        if layout == "model.language_model":
            key = key.replace("language_model.model.", "model.language_model.", 1)
            key = key.replace("language_model.lm_head.", "lm_head.", 1)
            for part in ("vision_tower.", "multi_modal_projector."):
                key = "model." + key if key.startswith(part) else key
        if fp8 and "language_model" in key and key.endswith("_proj.weight"):
            scale = (w.abs().max().float() / 448.0).reshape(())
            out[key] = (w / scale).to(torch.float8_e4m3fn)
            out[key + "_scale_inv"] = scale
            out[key.removesuffix("weight") + "activation_scale"] = torch.tensor(1.0)
        else:
            out[key] = w
    save_file(out, folder / "model.safetensors", metadata={"format": "pt"})
    # the Mistral-format copy: other names, never read by transformers
    save_file({"layers.0.attention.wq.weight": torch.zeros(4, 4)},
              folder / "consolidated.safetensors", metadata={"format": "pt"})
    if fp8:
        cfg = json.loads((folder / "config.json").read_text())
        cfg["quantization_config"] = {
            "quant_method": "fp8", "activation_scheme": "static", "weight_block_size": None,
            "modules_to_not_convert": ["model.vision_tower", "model.multi_modal_projector",
                                       "lm_head"]}
        (folder / "config.json").write_text(json.dumps(cfg, indent=2))


def dequantized_reference(folder: Path) -> Any:
    """The full `Mistral3ForConditionalGeneration` of a written folder, in float32, loaded by
    transformers itself (FP8 dequantized by its own quantizer): the reference for the
    text-only load."""
    import torch
    from transformers import AutoConfig, Mistral3ForConditionalGeneration

    config = AutoConfig.from_pretrained(folder)
    if getattr(config, "quantization_config", None) is not None:
        config.quantization_config = {**config.quantization_config, "dequantize": True}
    return Mistral3ForConditionalGeneration.from_pretrained(
        folder, config=config, dtype=torch.float32).eval()
