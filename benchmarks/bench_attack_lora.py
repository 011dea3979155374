"""Time LoRA attack steps: head-only-on-response loss vs the naive full-logits loss, side by side.

Same model, same adapter init, same batches (AdvBench attack-train pairs, chat template); each
path runs `--steps` forward+backward steps after one untimed warm-up step; which path goes first
alternates from step to step (head-only first on even steps, full-logits first on odd ones), so
a shared machine's load and the second pass's warm caches fall on both. The ratio prints last.

    .venv/bin/python benchmarks/bench_attack_lora.py --model qwen2.5-coder-0.5b --batch-size 4 --steps 2

On a device machine (no weights or data travel there): a random-init 1.5B-shaped Qwen2 in bf16
over synthetic batches of `--max-len` tokens, the response the last `--response-len`, LoRA on
every linear layer, with tokens/s and MFU (the estimate's FLOPs, see attacks/compute.py, against
`--peak-tflops`):

    python benchmarks/bench_attack_lora.py --random-init qwen2.5-1.5b-shape --device cuda \
        --batch-size 8 --max-len 512 --response-len 256 --rank 16 --target-modules all --steps 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shapes import SHAPES, load_handle  # noqa: E402

from refusalscope.attacks.compute import count_params, flops_estimate  # noqa: E402
from refusalscope.attacks.lora import (LoraAttackConfig, attach_lora,  # noqa: E402
                                       batch_indices, response_loss)
from refusalscope.attacks.pairs import IGNORE, collate, encode_pair, load_pairs  # noqa: E402

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def synthetic(n: int, batch: int, length: int, response: int, vocab: int, seed: int) -> list[dict]:
    """n batches [batch, length] of random token ids; labels on the last `response` tokens."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, vocab, (batch, length), generator=g)
        labels = ids.clone()
        labels[:, : length - response] = IGNORE
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--random-init", default=None,
                    help=f"random weights and synthetic batches: {', '.join(SHAPES)}, or a folder "
                         "with config.json + tokenizer")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--response-len", type=int, default=None,
                    help="--random-init: response tokens per row [default: max-len / 2]")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--target-modules", default=None,
                    help="comma list, or 'all' for every linear layer [default: attention q,k,v,o]")
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=989.0,
                    help="accelerator peak for MFU (H100 SXM dense bf16: 989)")
    a = ap.parse_args()
    handle = load_handle(a.model, a.random_init, a.device, a.dtype)
    targets = (ALL_LINEAR if a.target_modules == "all"
               else tuple(a.target_modules.split(",")) if a.target_modules else None)
    cfg = LoraAttackConfig(model=a.model, n_data=64, steps=a.steps, batch_size=a.batch_size,
                           rank=a.rank, alpha=2 * a.rank, target_modules=targets,
                           max_len=a.max_len, grad_checkpointing=a.grad_checkpointing)
    if a.random_init:
        batches = synthetic(a.steps + 1, a.batch_size, a.max_len,
                            a.response_len or a.max_len // 2, handle.model.config.vocab_size, seed=0)
    else:
        enc = [encode_pair(handle, p, cfg.max_len) for p in load_pairs(cfg.n_data, seed=0)]
        batches = [collate([enc[i] for i in batch_indices(len(enc), cfg.batch_size, 0, step)],
                           handle.tokenizer.pad_token_id) for step in range(a.steps + 1)]
    model = attach_lora(handle.model, cfg)
    params = count_params(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    model.train()

    def naive(m, b):  # type: ignore[no-untyped-def]
        return m(**b).loss  # full [B, T, vocab] logits

    times: dict[str, list[float]] = {"head-only": [], "full-logits": []}
    losses: dict[str, float] = {}
    tokens = response = 0
    for step in range(a.steps + 1):
        batch = {k: v.to(handle.device) for k, v in batches[step].items()}
        order = [("head-only", response_loss), ("full-logits", naive)]
        for name, fn in (order if step % 2 == 0 else order[::-1]):
            if handle.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            loss = fn(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # no opt.step(): both paths see the same weights
            if handle.device.type == "cuda":
                torch.cuda.synchronize()
            if step > 0:
                times[name].append(time.perf_counter() - t0)
            losses[name] = float(loss.detach())
        n_tok = int(batch["attention_mask"].sum())
        if step > 0:
            tokens += n_tok
            response += int((batch["labels"][:, 1:] != IGNORE).sum())
        print(f"step {step}: {n_tok} tokens, loss head-only {losses['head-only']:.4f}, "
              f"full-logits {losses['full-logits']:.4f}"
              + (" (warm-up)" if step == 0 else ""))
    peak = torch.cuda.max_memory_allocated() / 2**30 if handle.device.type == "cuda" else 0.0
    h, f = (sum(times[k]) / len(times[k]) for k in ("head-only", "full-logits"))
    # backward only (no optimizer step), so the FLOPs are the training estimate's
    flops = flops_estimate(params, tokens, response, grad_checkpointing=a.grad_checkpointing)
    secs = sum(times["head-only"])
    print(f"head-only: {tokens / secs:,.0f} tok/s, {flops / secs / 1e12:.2f} TFLOP/s"
          + (f", MFU {flops / secs / (a.peak_tflops * 1e12):.1%} of {a.peak_tflops:g}"
             if handle.device.type == "cuda" else "")
          + (f", peak {peak:.1f} GiB (both paths)" if peak else ""))
    print(f"{a.random_init or a.model} {handle.device} {next(model.parameters()).dtype} "
          f"batch {a.batch_size}: head-only {h:.2f} s/step, full-logits {f:.2f} s/step, "
          f"ratio {f / h:.2f}x")


if __name__ == "__main__":
    main()
