"""GPU check of the generation path: HF default `generate` vs static KV cache + compile.

Builds a random-init model of a real shape from its config (default: Qwen2.5-1.5B-shaped Qwen2,
bf16) so no weights need to travel, then times the same generation kwargs `generate_batch`
uses, at batch 1 and batch 32, default dynamic cache vs `cache_implementation="static"` (which
transformers compiles automatically on CUDA). Also runs `generate_rows` end to end on CUDA with
a small-vocabulary copy of the shape and checks static == dynamic greedy outputs.

    python benchmarks/bench_generate_gpu.py --new-tokens 64
"""

from __future__ import annotations

import argparse
import time

QWEN2_1_5B = dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                  num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                  max_position_embeddings=32768, rope_theta=1000000.0, tie_word_embeddings=True)


def _model(vocab: int, dtype):  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model("qwen2", **{**QWEN2_1_5B, "vocab_size": vocab})
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    return model.eval()


def _time_generate(model, batch: int, prompt_len: int, new: int, static: bool) -> float:  # type: ignore[no-untyped-def]
    import torch

    ids = torch.randint(10, 1000, (batch, prompt_len), device="cuda")
    kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0,
              temperature=None, top_p=None, top_k=None)
    if static:
        kw["cache_implementation"] = "static"
    with torch.inference_mode():
        model.generate(ids, attention_mask=torch.ones_like(ids), **kw)  # warm-up / compile
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--batches", default="1,32")
    args = ap.parse_args()

    import torch

    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
    model = _model(QWEN2_1_5B["vocab_size"], torch.bfloat16)
    for b in [int(x) for x in args.batches.split(",")]:
        t_dyn = _time_generate(model, b, args.prompt_len, args.new_tokens, static=False)
        t0 = time.perf_counter()
        t_sta = _time_generate(model, b, args.prompt_len, args.new_tokens, static=True)
        warm = time.perf_counter() - t0 - t_sta
        tok = b * args.new_tokens
        print(f"batch {b:>3}: dynamic {tok / t_dyn:8.1f} tok/s | static+compile {tok / t_sta:8.1f} tok/s "
              f"| ratio {t_dyn / t_sta:5.2f}x | first static call (compile) {warm:5.1f} s")
    del model
    _end_to_end()


def _end_to_end() -> None:
    """Our own generate_rows on CUDA (bf16), dynamic vs static cache, greedy: same tokens?"""
    import torch

    from refusalscope.data.load import Prompt
    from refusalscope.generation import GenerateConfig, generate_rows
    from refusalscope.models.handle import ModelHandle
    from refusalscope.models.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    model = _model(len(tok), torch.bfloat16)
    model.generation_config.eos_token_id = tok.eos_token_id
    handle = ModelHandle(model, tok, "qwen2-1.5b-shape-random")
    prompts = [Prompt(id=f"p{i}", prompt="Write a short poem about the sea " * (1 + i % 4),
                      split="eval", label="harmless", source="bench") for i in range(16)]
    cfg = GenerateConfig(model="random", n=16, max_new_tokens=32)
    t0 = time.perf_counter()
    dyn = list(generate_rows(handle, prompts, cfg, batch_size=16))
    t1 = time.perf_counter()
    sta = list(generate_rows(handle, prompts, cfg, batch_size=16, static_cache=True))
    t2 = time.perf_counter()
    same = sum(a["response"] == b["response"] for a, b in zip(dyn, sta))
    print(f"generate_rows on {handle.device} bf16: dynamic {t1 - t0:.1f} s, static {t2 - t1:.1f} s "
          f"(incl. compile); identical greedy responses {same}/{len(dyn)}")


if __name__ == "__main__":
    main()
