"""Model shapes, card peaks and run sizes of `benchmarks/gpu_check.py` (data, no logic but
the card lookup)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# name -> (model_type, config): qwen2.5-coder-1.5b's config; Llama-2-7b-hf's shapes
SHAPES: dict[str, tuple[str, dict[str, Any]]] = {
    "1.5b": ("qwen2", dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                           num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                           max_position_embeddings=32768, rope_theta=1000000.0,
                           tie_word_embeddings=True)),
    "7b": ("llama", dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                         max_position_embeddings=4096, tie_word_embeddings=False)),
    "0.5b": ("qwen2", dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                           num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                           max_position_embeddings=32768, rope_theta=1000000.0,
                           tie_word_embeddings=True)),
    "tiny-qwen2": ("qwen2", dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, vocab_size=1024,
                                 max_position_embeddings=2048, tie_word_embeddings=True)),
    "tiny-llama": ("llama", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=4, vocab_size=512,
                                 max_position_embeddings=2048, tie_word_embeddings=False)),
}
# torch.cuda.get_device_name() substring -> (dense bf16 FLOP/s without sparsity, HBM bytes/s),
# from NVIDIA's H200, H100 and A100 datasheets; first match wins
CARDS = [("H200", 989e12, 4.8e12), ("H100 NVL", 835e12, 3.9e12), ("H100 PCIe", 756e12, 2.0e12),
         ("H100", 989e12, 3.35e12), ("A100-SXM4-40GB", 312e12, 1.555e12),
         ("A100-PCIE-40GB", 312e12, 1.555e12), ("A100 80GB PCIe", 312e12, 1.935e12),
         ("A100", 312e12, 2.039e12)]


@dataclass(frozen=True)
class Profile:
    """Sizes of one run: the GPU check, or the CPU smoke test of the same code."""

    shapes: tuple[str, ...]
    batches: tuple[int, ...]  # generate batch sizes; batch 1 runs `b1_prompts` one by one
    b1_prompts: int
    new_tokens: int
    lora: tuple[tuple[int, int], ...]  # (batch, seq); the last one is the plan's rate
    lora_steps: int
    gcg: tuple[int, int, int, int]  # width, top-k, suffix length, steps
    prefill: tuple[int, int]  # batch, tokens
    budget_s: float
    warmup: int = 1  # untimed passes before each timed one (0: a slow CPU times its first)


GPU = Profile(("1.5b", "7b"), (1, 32), 4, 64, ((8, 512), (16, 1024), (4, 256)), 3,
              (512, 256, 20, 3), (32, 128), 450.0)
CPU = Profile(("0.5b",), (1, 8), 2, 16, ((4, 128),), 1, (16, 64, 20, 1), (4, 64), 1500.0,
              warmup=0)  # the CPU rates file (study/rates_cpu.json): small sizes, real shape
SMOKE = Profile(("tiny-qwen2", "tiny-llama"), (1, 4), 2, 8, ((2, 32), (2, 64), (2, 16)), 1,
                (16, 8, 5, 1), (4, 32), 300.0)


def card(device: str) -> tuple[str, float | None, float | None]:
    """(name, dense bf16 peak FLOP/s, memory bytes/s) of `device`; CPU: no peaks."""
    import torch

    if not device.startswith("cuda"):
        return f"cpu ({torch.get_num_threads()} threads)", None, None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, flops, bw in CARDS:
        if key in name:
            return name, flops, bw
    return name, None, None
