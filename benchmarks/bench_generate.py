"""Batched generation vs a per-prompt `generate` loop, same model, prompts and token budget.

Three passes, one after the other in this process, same prompts, greedy, same budget:
  1. refusalscope batched: `generate_rows(batch_size=B)` (finished rows leave the batch);
  2. baseline: a per-prompt loop of transformers' `model.generate` (what one writes by hand);
  3. refusalscope with batch_size=1 (our own loop, one prompt at a time): isolates batching;
  4. refusalscope batched with MKL's linears instead of oneDNN's (`onednn=False`): isolates
     the CPU kernels (skipped off the CPU, where both are the same path).
Prints wall time, tokens/s, both speed ratios, and how many responses agree.

    .venv/bin/python benchmarks/bench_generate.py --model qwen2.5-coder-0.5b --n 32 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--split", default="eval")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()

    import torch

    from refusalscope.data.load import load_split
    from refusalscope.generate import GenerateConfig, _eos_ids, _split_completion, generate_rows
    from refusalscope.models.handle import ModelHandle, RuntimeOptions

    handle = ModelHandle.load(args.model, options=RuntimeOptions(device=args.device, dtype=args.dtype))
    prompts = load_split(args.split, n=args.n)
    cfg = GenerateConfig(model=args.model, split=args.split, n=args.n,
                         max_new_tokens=args.max_new_tokens)
    print(f"model={args.model} prompts={len(prompts)} max_new_tokens={args.max_new_tokens} "
          f"threads={torch.get_num_threads()} device={handle.device}")

    def timed(batch_size: int, onednn: bool = True) -> tuple[float, list[dict]]:
        t0 = time.perf_counter()
        rows = list(generate_rows(handle, prompts, cfg, batch_size=batch_size, onednn=onednn))
        return time.perf_counter() - t0, rows

    def hf_loop() -> tuple[float, list[dict]]:
        eos = _eos_ids(handle)
        rows = []
        t0 = time.perf_counter()
        for p in prompts:
            enc = handle.tokenizer(handle.format_prompt(p.prompt), return_tensors="pt",
                                   add_special_tokens=not handle.has_chat_template)
            with torch.inference_mode():
                out = handle.model.generate(**enc, max_new_tokens=args.max_new_tokens,
                                            do_sample=False, temperature=None, top_p=None,
                                            top_k=None, pad_token_id=handle.tokenizer.pad_token_id)
            resp, n_new, _ = _split_completion(out[0, enc["input_ids"].shape[1]:].tolist(), eos)
            rows.append({"id": p.id, "new_tokens": n_new,
                         "response": handle.tokenizer.decode(resp, skip_special_tokens=True)})
        return time.perf_counter() - t0, rows

    # Warm up both code paths (first-touch of the weights, allocator, oneDNN primitives) so
    # that no pass pays start-up costs the others do not.
    list(generate_rows(handle, prompts[:2], GenerateConfig(model=args.model, max_new_tokens=4),
                       batch_size=2))
    with torch.inference_mode():
        enc = handle.tokenizer(handle.format_prompt(prompts[0].prompt), return_tensors="pt",
                               add_special_tokens=not handle.has_chat_template)
        handle.model.generate(**enc, max_new_tokens=4, do_sample=False, temperature=None,
                              top_p=None, top_k=None, pad_token_id=handle.tokenizer.pad_token_id)

    t_batch, batched = timed(args.batch_size)
    t_hf, hf_rows = hf_loop()
    t_loop, looped = timed(1)
    on_cpu = handle.device.type == "cpu"
    t_mkl, mkl_rows = timed(args.batch_size, onednn=False) if on_cpu else (t_batch, batched)
    tok_h = sum(r["new_tokens"] for r in hf_rows)
    tok_b = sum(r["new_tokens"] for r in batched)
    tok_l = sum(r["new_tokens"] for r in looped)
    def same(a: list[dict], b: list[dict]) -> int:
        return sum(x["response"] == y["response"] for x, y in
                   zip(sorted(a, key=lambda r: r["id"]), sorted(b, key=lambda r: r["id"])))

    print(f"refusalscope batched (batch {args.batch_size:>3}): {t_batch:8.1f} s  {tok_b:6d} tokens  {tok_b / t_batch:7.1f} tok/s")
    print(f"HF generate, per-prompt loop   : {t_hf:8.1f} s  {tok_h:6d} tokens  {tok_h / t_hf:7.1f} tok/s")
    print(f"refusalscope, batch size 1     : {t_loop:8.1f} s  {tok_l:6d} tokens  {tok_l / t_loop:7.1f} tok/s")
    if on_cpu:
        tok_m = sum(r["new_tokens"] for r in mkl_rows)
        print(f"refusalscope batched, MKL      : {t_mkl:8.1f} s  {tok_m:6d} tokens  {tok_m / t_mkl:7.1f} tok/s")
    print(f"speed ratio vs per-prompt HF generate loop: {t_hf / t_batch:.2f}x")
    print(f"speed ratio vs our own batch-size-1 loop:   {t_loop / t_batch:.2f}x")
    if on_cpu:
        print(f"speed ratio of oneDNN vs MKL linears, batched: {t_mkl / t_batch:.2f}x")
    print(f"identical responses: batched=HF loop {same(batched, hf_rows)}/{len(prompts)}, "
          f"batched=our loop {same(batched, looped)}/{len(prompts)}, "
          f"batched=batched MKL {same(batched, mkl_rows)}/{len(prompts)}")


if __name__ == "__main__":
    main()
