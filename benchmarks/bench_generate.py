"""Batched generation vs a per-prompt `generate` loop, same model, prompts and token budget.

Prints wall time, generated tokens/s for both, the speed ratio, and how many responses agree.
Both paths go through `refusalscope.generate.generate_rows` (batch_size=1 is the per-prompt loop:
one `model.generate` call per prompt, no padding), run one after the other in this process.

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
    from refusalscope.generate import GenerateConfig, generate_rows
    from refusalscope.models.handle import ModelHandle, RuntimeOptions

    handle = ModelHandle.load(args.model, options=RuntimeOptions(device=args.device, dtype=args.dtype))
    prompts = load_split(args.split, n=args.n)
    cfg = GenerateConfig(model=args.model, split=args.split, n=args.n,
                         max_new_tokens=args.max_new_tokens)
    print(f"model={args.model} prompts={len(prompts)} max_new_tokens={args.max_new_tokens} "
          f"threads={torch.get_num_threads()} device={handle.device}")

    def timed(batch_size: int) -> tuple[float, list[dict]]:
        t0 = time.perf_counter()
        rows = list(generate_rows(handle, prompts, cfg, batch_size=batch_size))
        return time.perf_counter() - t0, rows

    t_batch, batched = timed(args.batch_size)
    t_loop, looped = timed(1)
    tok_b = sum(r["new_tokens"] for r in batched)
    tok_l = sum(r["new_tokens"] for r in looped)
    same = sum(a["response"] == b["response"] for a, b in
               zip(sorted(batched, key=lambda r: r["id"]), sorted(looped, key=lambda r: r["id"])))
    print(f"batched  (batch {args.batch_size:>3}): {t_batch:8.1f} s  {tok_b:6d} tokens  {tok_b / t_batch:7.1f} tok/s")
    print(f"per-prompt loop    : {t_loop:8.1f} s  {tok_l:6d} tokens  {tok_l / t_loop:7.1f} tok/s")
    print(f"speed ratio (loop time / batched time): {t_loop / t_batch:.2f}x")
    print(f"identical responses: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
