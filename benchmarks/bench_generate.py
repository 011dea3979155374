"""Batched generation against transformers' batched `generate` at the same batch size.

Same model, prompts, greedy decoding and token budget for every path:
  ours        `generate_rows(batch_size=B)`: grouped prefill, finished rows leave the batch,
              oneDNN linears on the CPU
  HF batched  transformers' `model.generate` on the same B prompts, left-padded, default
              (dynamic) cache: what a user batching by hand runs -- the headline baseline
  HF loop     `model.generate` one prompt at a time (the first benchmarks' baseline)
  (`--all` adds our own loop at batch size 1 and ours with MKL's linears, `onednn=False`)
The prompts are cut into chunks of B; every path runs each chunk once, chunk after chunk, in
an order that rotates from chunk to chunk, so a shared machine's load falls on all paths
(use --n a multiple of B, at least 2 chunks). Prints wall time and tokens/s per path, how
many responses are identical between paths, and the headline ratio last.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_generate.py --model qwen2.5-coder-0.5b \\
        --n 32 --batch-size 16 --max-new-tokens 128
"""

from __future__ import annotations

import argparse
import time
from typing import Any


def hf_generate(handle: Any, prompts: list[Any], max_new_tokens: int) -> list[dict[str, Any]]:
    """transformers' greedy `generate` on `prompts` as one left-padded batch -> rows by id."""
    import torch

    from refusalscope.generation import _eos_ids, _split_completion

    tok = handle.tokenizer
    enc = tok([handle.format_prompt(p.prompt) for p in prompts], return_tensors="pt",
              padding=True, add_special_tokens=not handle.has_chat_template).to(handle.device)
    with torch.inference_mode():
        out = handle.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                    temperature=None, top_p=None, top_k=None,
                                    pad_token_id=tok.pad_token_id)
    eos = _eos_ids(handle)
    rows = []
    for p, seq in zip(prompts, out[:, enc["input_ids"].shape[1]:].tolist(), strict=True):
        resp, n_new, _ = _split_completion(seq, eos)
        rows.append({"id": p.id, "new_tokens": n_new,
                     "response": tok.decode(resp, skip_special_tokens=True)})
    return rows


def paths(handle: Any, cfg: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Each path as a function of one chunk of prompts -> rows."""
    from refusalscope.generation import generate_rows

    def ours(bs: int, onednn: bool = True) -> Any:
        return lambda chunk: list(generate_rows(handle, chunk, cfg, batch_size=bs,
                                                onednn=onednn))

    out = {"ours": ours(args.batch_size),
           "HF batched": lambda chunk: hf_generate(handle, chunk, args.max_new_tokens),
           "HF loop": lambda chunk: [r for p in chunk
                                     for r in hf_generate(handle, [p], args.max_new_tokens)]}
    if args.all:
        out["ours, batch 1"] = ours(1)
        if handle.device.type == "cpu":
            out["ours, MKL"] = ours(args.batch_size, onednn=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--split", default="eval")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--all", action="store_true", help="also our batch-1 loop and MKL linears")
    args = ap.parse_args()

    import torch

    from refusalscope.data.load import load_split
    from refusalscope.generation import GenerateConfig, generate_rows
    from refusalscope.models.handle import ModelHandle, RuntimeOptions

    handle = ModelHandle.load(args.model, options=RuntimeOptions(device=args.device,
                                                                 dtype=args.dtype))
    prompts = load_split(args.split, n=args.n)
    cfg = GenerateConfig(model=args.model, split=args.split, n=args.n,
                         max_new_tokens=args.max_new_tokens)
    runs = paths(handle, cfg, args)
    names = list(runs)
    print(f"model={args.model} prompts={len(prompts)} batch={args.batch_size} "
          f"max_new_tokens={args.max_new_tokens} threads={torch.get_num_threads()} "
          f"device={handle.device}")
    # warm-up: first-touch of weights, allocator and oneDNN primitives falls on no path
    list(generate_rows(handle, prompts[:2], GenerateConfig(model=args.model, max_new_tokens=4),
                       batch_size=2))
    hf_generate(handle, prompts[:2], 4)

    secs = {k: 0.0 for k in names}
    cpu = {k: 0.0 for k in names}
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    chunks = [prompts[i:i + args.batch_size] for i in range(0, len(prompts), args.batch_size)]
    for c, chunk in enumerate(chunks):
        order = names[c % len(names):] + names[:c % len(names)]
        for k in order:
            t0, c0 = time.perf_counter(), time.process_time()
            rows[k] += runs[k](chunk)
            secs[k] += time.perf_counter() - t0
            cpu[k] += time.process_time() - c0
        print(f"chunk {c + 1}/{len(chunks)} (order {', '.join(order)}): "
              + ", ".join(f"{k} {secs[k]:.1f} s" for k in names), flush=True)
    report(names, secs, cpu if handle.device.type == "cpu" else None, rows, len(prompts))


def report(names: list[str], secs: dict[str, float], cpu: dict[str, float] | None,
           rows: dict[str, list[dict[str, Any]]], n: int) -> None:
    """Per-path wall time, CPU time (on the CPU) and tokens/s, identical responses between
    paths, ratios; the headline (against transformers' batched `generate`) last. With
    OMP_NUM_THREADS=1 the CPU time is the work done, whatever share of a busy machine the
    process got; wall time on a shared machine also measures that share."""
    by_id = {k: {r["id"]: r["response"] for r in rows[k]} for k in names}
    for k in names:
        tok = sum(r["new_tokens"] for r in rows[k])
        print(f"{k:<14}: {secs[k]:8.1f} s  {tok:6d} tokens  {tok / secs[k]:7.1f} tok/s"
              + (f"  CPU {cpu[k]:8.1f} s" if cpu else ""))
    for k in names[1:]:
        same = sum(by_id["ours"][i] == by_id[k][i] for i in by_id["ours"])
        print(f"identical responses, ours = {k}: {same}/{n}")
    same = sum(by_id["HF batched"][i] == by_id["HF loop"][i] for i in by_id["HF loop"])
    print(f"identical responses, HF batched = HF loop: {same}/{n}")
    def ratio(k: str) -> str:
        return (f"wall {secs[k] / secs['ours']:.2f}x"
                + (f", CPU time {cpu[k] / cpu['ours']:.2f}x" if cpu else ""))
    for k in names[2:]:
        print(f"speed ratio vs {k}: {ratio(k)}")
    print(f"speed ratio vs transformers' batched generate: {ratio('HF batched')}")


if __name__ == "__main__":
    main()
