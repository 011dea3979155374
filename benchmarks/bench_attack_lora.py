"""Time LoRA attack steps: head-only-on-response loss vs the naive full-logits loss, side by side.

Same model, same adapter init, same batches (AdvBench attack-train pairs, chat template); each
path runs `--steps` optimizer steps after one untimed warm-up step, alternating per step.

    .venv/bin/python benchmarks/bench_attack_lora.py --model qwen2.5-coder-0.5b --batch-size 4 --steps 2
"""

from __future__ import annotations

import argparse
import time

import torch

from refusalscope.attacks.lora import LoraAttackConfig, attach_lora, batch_indices, response_loss
from refusalscope.attacks.pairs import collate, encode_pair, load_pairs
from refusalscope.models.handle import ModelHandle, RuntimeOptions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--grad-checkpointing", action="store_true")
    a = ap.parse_args()
    handle = ModelHandle.load(a.model, options=RuntimeOptions(device=a.device))
    cfg = LoraAttackConfig(model=a.model, n_data=64, steps=a.steps, batch_size=a.batch_size,
                           grad_checkpointing=a.grad_checkpointing)
    enc = [encode_pair(handle, p, cfg.max_len) for p in load_pairs(cfg.n_data, seed=0)]
    model = attach_lora(handle.model, cfg)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=cfg.lr)
    model.train()

    def naive(m, b):  # type: ignore[no-untyped-def]
        return m(**b).loss  # full [B, T, vocab] logits

    times: dict[str, list[float]] = {"head-only": [], "full-logits": []}
    for step in range(a.steps + 1):
        rows = [enc[i] for i in batch_indices(len(enc), cfg.batch_size, 0, step)]
        batch = {k: v.to(handle.device)
                 for k, v in collate(rows, handle.tokenizer.pad_token_id).items()}
        for name, fn in (("head-only", response_loss), ("full-logits", naive)):
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
        tokens = int(batch["attention_mask"].sum())
        print(f"step {step}: {tokens} tokens, loss {float(loss.detach()):.4f}"
              + (" (warm-up)" if step == 0 else ""))
    h, f = (sum(times[k]) / len(times[k]) for k in ("head-only", "full-logits"))
    print(f"{a.model} {handle.device} {next(model.parameters()).dtype} batch {a.batch_size}: "
          f"head-only {h:.2f} s/step, full-logits {f:.2f} s/step, ratio {f / h:.2f}x")


if __name__ == "__main__":
    main()
