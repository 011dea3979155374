"""Accelerator memory per model size, from `refusalscope.memory` (the estimate `attack lora` uses
to turn on gradient checkpointing): the README's Install table.

Models are built on torch's meta device from their published configs (no download, no memory):
bf16 weights, a LoRA step of rank 8 on q,k,v,o at batch 4 x 256 tokens with 512 loss rows (the
seed-plan's LoRA setting), and greedy generation's KV cache at batch 32 x 512 tokens.

    .venv/bin/python scripts/memory_table.py
"""

from __future__ import annotations

GiB = 1 << 30
# Published configs (config.json of each hub id); only shape fields matter here.
CONFIGS = {
    "qwen2.5-coder-0.5b": ("qwen2", dict(hidden_size=896, intermediate_size=4864,
                                         num_hidden_layers=24, num_attention_heads=14,
                                         num_key_value_heads=2, vocab_size=151936,
                                         tie_word_embeddings=False)),
    "qwen2.5-coder-1.5b": ("qwen2", dict(hidden_size=1536, intermediate_size=8960,
                                         num_hidden_layers=28, num_attention_heads=12,
                                         num_key_value_heads=2, vocab_size=151936,
                                         tie_word_embeddings=False)),
    "phi-2": ("phi", dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=32,
                          num_attention_heads=32, num_key_value_heads=32, vocab_size=51200,
                          partial_rotary_factor=0.4)),
    "llama-7b": ("llama", dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                               num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)),
    "llama-13b": ("llama", dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                                num_attention_heads=40, num_key_value_heads=40, vocab_size=32000)),
}
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "dense")  # phi's attention out is `dense`


def row(name: str) -> str:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from refusalscope.memory import Shape, lora_memory

    arch, kw = CONFIGS[name]
    cfg = AutoConfig.for_model(arch, **kw)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    shape = Shape.from_config(cfg)
    mem = lora_memory(model, targets=TARGETS, rank=8, batch=4, seq=256, response_rows=512,
                      budget=None)
    no_ckpt = mem.weights + mem.adapter + mem.activations + mem.loss
    ckpt = mem.weights + mem.adapter + mem.activations_checkpointed + mem.loss
    kv = 2 * shape.layers * shape.kv * 2 * 32 * 512  # K and V, bf16, batch 32 x 512 tokens
    return (f"| `{name}` | {mem.weights / GiB:.1f} | {(mem.weights + kv) / GiB:.1f} | "
            f"{no_ckpt / GiB:.1f} | {ckpt / GiB:.1f} |")


def main() -> None:
    print("| model | bf16 weights (GiB) | generate, batch 32 x 512 tokens | LoRA step, batch 4 x 256 "
          "| same, gradient checkpointing |")
    print("|---|---|---|---|---|")
    for name in CONFIGS:
        print(row(name))


if __name__ == "__main__":
    main()
