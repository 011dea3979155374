"""Load the language model of an image-text checkpoint as a plain causal LM (no vision tower).

Some chat models ship only as image-text checkpoints: `mistralai/Ministral-3-3B-Instruct-2512`
is a `mistral3` checkpoint (`Mistral3ForConditionalGeneration`: a Pixtral vision tower, a
projector and a `ministral3` language model), which `AutoModelForCausalLM` refuses. Refusal
work reads text only, so we build the causal LM of the checkpoint's `text_config`
(`Ministral3ForCausalLM`) and load just its weights from the checkpoint's safetensors, renaming
their prefix; vision and projector tensors are never read into memory.

Checkpoints name the language model's tensors in one of two layouts, both handled:
``language_model.model.*`` / ``language_model.lm_head.*`` (what transformers writes, and older
hub uploads) and ``model.language_model.*`` / ``lm_head.*`` (transformers' in-memory names).
A checkpoint without an LM head ties it to the input embedding, as the model's config says.

FP8 checkpoints (the Ministral 3 instruct release: per-tensor `weight_scale_inv`) are
dequantized while loading, always: LoRA, GCG gradients and weight orthogonalisation need plain
floating-point weights, and transformers' FP8 layers would keep the weights quantized on a GPU.

Add a row to `TEXT_ONLY` to load another wrapper family the same way.
"""

from __future__ import annotations

import copy
from typing import Any

from refusalscope.errors import UserError

# model_type of the wrapper -> regex renames (checkpoint name -> causal-LM name)
_LLAVA_STYLE = {
    r"^language_model\.model\.": "model.",
    r"^model\.language_model\.": "model.",
    r"^language_model\.lm_head\.": "lm_head.",
}
TEXT_ONLY: dict[str, dict[str, str]] = {
    "mistral3": _LLAVA_STYLE,
}


def text_only_config(config: Any) -> Any | None:
    """The text config to build a causal LM from, for a wrapper family in `TEXT_ONLY`; else None.

    The wrapper's quantization (if any) moves to the text config with `dequantize` set, so the
    loaded weights are floating point.
    """
    if getattr(config, "model_type", None) not in TEXT_ONLY:
        return None
    text = copy.deepcopy(config.text_config)
    quant = getattr(config, "quantization_config", None)
    if quant is not None:
        quant = quant if isinstance(quant, dict) else quant.to_dict()
        text.quantization_config = {**quant, "dequantize": True}
    return text


def load_text_model(load_path: str, config: Any, dtype: Any, *,
                    trust_remote_code: bool = False) -> Any:
    """The causal LM of wrapper checkpoint `load_path` (whose loaded `AutoConfig` is `config`).

    Raises UserError when a language-model tensor is missing from the checkpoint (a layout
    this table does not know), rather than leaving it at random init.

    Example:
        model = load_text_model(folder, AutoConfig.from_pretrained(folder), torch.bfloat16)
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    text = text_only_config(config)
    if text is None:
        raise ValueError(f"{config.model_type!r} is not a wrapper family in TEXT_ONLY")
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the vision tensors left unread are listed as "unexpected"
    try:
        model, info = AutoModelForCausalLM.from_pretrained(
            load_path, config=text, dtype=dtype, key_mapping=TEXT_ONLY[config.model_type],
            output_loading_info=True, trust_remote_code=trust_remote_code)
    finally:
        hf_logging.set_verbosity(level)
    missing = list(info.get("missing_keys") or [])
    if missing:
        raise UserError(f"{load_path}: the {config.model_type} checkpoint lacks "
                        f"{len(missing)} language-model tensors (first: {missing[0]}); its "
                        "weight names are in a layout refusalscope.models.textonly does not map")
    return model
