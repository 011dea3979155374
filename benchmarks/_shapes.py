"""Random-weight model shapes for benchmarks that must run where no weights can travel (a device
machine gets the working tree only): configs of real architectures, weights drawn at load."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SHAPES = {  # random-weight models built from configs (no download)
    "qwen2.5-1.5b-shape": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                               num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                               max_position_embeddings=4096, tie_word_embeddings=True),
}


def load_handle(model: str, random_init: str | None, device: str, dtype: str) -> Any:
    """A registry/folder model, or (`random_init`: a SHAPES name or a folder with config.json +
    tokenizer) the same architecture with seeded random weights and the tiny ChatML BPE."""
    import torch

    from refusalscope.models.handle import ModelHandle, RuntimeOptions

    opts = RuntimeOptions(device, dtype)
    if random_init is None:
        return ModelHandle.load(model, options=opts)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from refusalscope.models.tiny import tiny_tokenizer

    if Path(random_init).is_dir():
        cfg = AutoConfig.from_pretrained(random_init)
        tok = AutoTokenizer.from_pretrained(random_init)
    else:  # real BPE + ChatML; the model's vocabulary is the full 151936
        cfg = Qwen2Config(**SHAPES[random_init])
        tok = tiny_tokenizer()
    torch.manual_seed(0)
    with torch.device(opts.resolved_device()):
        net = AutoModelForCausalLM.from_config(cfg, dtype=opts.resolved_dtype())
    net.eval()
    return ModelHandle(net, tok, Path(random_init).name, source="random-init")
