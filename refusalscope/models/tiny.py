"""Tiny random-weight models built from configs, for tests and plumbing checks.

Real architectures (Llama, Qwen2, Gemma3, Phi, Mistral), real tokenizer machinery (a byte-level
BPE trained on a fixed corpus, with a ChatML chat template), random weights. Nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

ARCHS = ("llama", "qwen2", "gemma3_text", "phi", "mistral")

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sorry, but I cannot help with that request.",
    "Sure, here is a recipe for a simple tomato soup with basil.",
    "Write a short poem about the sea and the wind at night.",
    "Explain how photosynthesis works in plants, step by step.",
    "As an AI language model, I can't provide that information.",
    "user assistant system: hello, how are you today? 0123456789",
]


def tiny_tokenizer(vocab_size: int = 384, chat_template: str | None = CHATML_TEMPLATE, *,  # type: ignore[no-untyped-def]
                   specials: tuple[str, ...] = tuple(_SPECIALS), eos: str = "<|im_end|>",
                   pad: str | None = "<|endoftext|>", bos: str | None = None):
    """A deterministic byte-level BPE tokenizer (PreTrainedTokenizerFast) with a chat template.

    `specials` (ids 0, 1, ... in order), `eos`, `pad` and `bos` mimic another family's
    special tokens (e.g. ``("<unk>", "<s>", "</s>")`` for Llama 2); `pad=None`: none, as
    many base models ship.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=pad,
                                   bos_token=bos)
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def tiny_config(arch: str, vocab_size: int, **overrides: Any):  # type: ignore[no-untyped-def]
    """A 3-layer, d_model 64 config of the given architecture."""
    from transformers import AutoConfig

    if arch not in ARCHS:
        raise ValueError(f"unknown tiny arch {arch!r}: one of {ARCHS}")
    common: dict[str, Any] = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        tie_word_embeddings=False,
    )
    if arch == "gemma3_text":
        common.update(head_dim=16, sliding_window=64, query_pre_attn_scalar=16)
    if arch == "phi":
        common.update(num_key_value_heads=4, partial_rotary_factor=0.5)
    common.update(overrides)
    return AutoConfig.for_model(arch, **common)


def tiny_model(arch: str = "llama", seed: int = 0, dtype: str = "float32"):  # type: ignore[no-untyped-def]
    """(model, tokenizer) with random weights drawn from `seed`; eval mode, fp32 by default."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tiny_tokenizer()
    config = tiny_config(arch, vocab_size=len(tokenizer))
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.bos_token_id = None
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


def tiny_handle(arch: str = "llama", seed: int = 0):  # type: ignore[no-untyped-def]
    """A `ModelHandle` around `tiny_model(arch, seed)`."""
    from refusalscope.models.handle import ModelHandle

    model, tokenizer = tiny_model(arch, seed)
    return ModelHandle(model, tokenizer, f"tiny-{arch}", source=f"tiny:{arch}:{seed}")
