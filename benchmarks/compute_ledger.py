"""FLOPs of one LoRA cell, one GCG run and one AutoDAN run by the old formulas and by the ledger.

Before the shared ledger (`refusalscope.compute`), LoRA counted tokens·(4·N_body + 6·N_lora) +
response tokens·4·N_head, while GCG counted 2·N per forward token and 6·N per gradient token and
AutoDAN 2·N per forward token, with N = every loaded parameter (the input embedding and, in the
GGUF conversions, an untied head included). Both columns below come from the *same* counts.

Where the counts come from (`--run` picks the attacks that really run on the model):

* counted (default): the attacks' own tokenisation and batching with the real tokenizer and the
  real model's parameter classes, no forward pass. LoRA: exact (the batches of every step are
  fixed by seed and step). GCG: exact layout; every step scores `search_width` candidates (the
  most a step can: the filter only drops duplicates and candidates that do not round-trip).
  AutoDAN: generation 0 exact; each later generation scores population - elites new children,
  taken as long as the mean starting prompt (an estimate: children are crossovers of them).
* run: the real attack on the model; its ledger is read back and the old formula applied to the
  same counts (the prefix-cache forwards, which the old GCG count left out, are left out again).

Example:
    python benchmarks/compute_ledger.py                    # counted, qwen2.5-coder-0.5b
    python benchmarks/compute_ledger.py --run gcg --gcg-steps 1
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "2")


def lora_cell(handle: Any, args: argparse.Namespace) -> tuple[Any, int, str]:
    """The lora-grid cell's ledger from its batches (16 pairs x 16 steps, batch 4, max_len 128)."""
    from refusalscope.attacks.lora import LoraAttackConfig, attach_lora, batch_indices
    from refusalscope.attacks.pairs import encode_pair, load_pairs
    from refusalscope.compute import Ledger, count_params, train_flops

    cfg = LoraAttackConfig(model=args.model, n_data=16, steps=16, batch_size=4, max_len=128)
    pairs = load_pairs(cfg.n_data, seed=cfg.seed, target_kind=cfg.target_kind)
    encoded = [encode_pair(handle, p, cfg.max_len) for p in pairs]
    model = attach_lora(handle.model, cfg)
    try:
        led = Ledger(count_params(model), steps=0, examples_seen=0)
    finally:
        handle.model = model.unload()
    for step in range(cfg.steps):
        rows = [encoded[i] for i in batch_indices(len(encoded), cfg.batch_size, cfg.seed, step)]
        led.train_step([(len(ids), len(ids) - n) for ids, n in rows], 0.0)
    old = train_flops(led.params, led.tokens_seen, led.response_tokens_seen)
    return led, old, "counted (exact: the batches are fixed by seed and step)"


def gcg_run(handle: Any, args: argparse.Namespace, real: bool) -> tuple[Any, int, str]:
    from refusalscope.attacks.gcg import GCG, GCGConfig
    from refusalscope.attacks.gcg_run import DEFAULT_TARGET, load_requests
    from refusalscope.compute import Ledger

    req = load_requests("attack-train", 1, 0)[0]
    cfg = GCGConfig(steps=args.gcg_steps, search_width=args.gcg_width, topk=args.gcg_topk)
    opt = GCG(handle, [(req.prompt, req.target or DEFAULT_TARGET)], cfg)
    prefix = sum(s.prefix.shape[1] for s in opt.slots)
    if real:
        state = opt.new_state()
        while state.step < cfg.steps:
            opt.step(state)
        led, how = state.compute, "run"
    else:
        s, length = opt.slots[0], len(opt.init_ids)
        t = s.target.shape[1]
        n = length + s.tail.shape[1] + t - 1  # positions after the cached prefix
        led = Ledger(opt.params, steps=0, examples_seen=0)
        led.forward(prefix, 1)
        led.forward(n, t)  # the initial suffix's loss
        for _ in range(cfg.steps):
            led.forward(n, t, length)
            led.backward(n, t, length)
            led.forward(cfg.search_width * n, cfg.search_width * t)
            led.step(1)
        how = f"counted ({cfg.search_width} candidates per step)"
    n_all = handle.n_params()
    candidates = led.forward_tokens - led.backward_tokens - prefix
    old = 2 * n_all * candidates + 6 * n_all * led.backward_tokens
    return led, old, how


def autodan_run(handle: Any, args: argparse.Namespace, real: bool) -> tuple[Any, int, str]:
    from refusalscope.attacks.autodan import AutoDAN, AutoDANConfig, run
    from refusalscope.attacks.gcg_run import DEFAULT_TARGET, load_requests
    from refusalscope.compute import Ledger

    req = load_requests("attack-train", 1, 0)[0]
    requests = [(req.prompt, req.target or DEFAULT_TARGET)]
    cfg = AutoDANConfig(population=args.population, generations=args.generations,
                        early_stop=False)
    if real:
        led, how = run(handle, requests, cfg).compute, "run"
    else:
        opt = AutoDAN(handle, requests, cfg)
        t = opt.targets[0].shape[1]
        lengths = [len(opt.prompt_ids(b, req.prompt)) for b in opt.initial_population()]
        led = Ledger(opt.params, steps=0, examples_seen=0)
        for length in lengths:
            led.forward(length + t - 1, t, sequences=1)
        mean = round(sum(lengths) / len(lengths))
        for _ in range(cfg.generations):
            for _ in range(cfg.population - cfg.n_elite):
                led.forward(mean + t - 1, t, sequences=1)
            led.step(1)
        how = "counted (gen 0 exact; children at the mean prompt length)"
    # old: 2 N per token, each greedy check counted prompt + all new tokens
    old = 2 * handle.n_params() * (led.forward_tokens + led.generations)
    return led, old, how


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-0.5b")
    ap.add_argument("--run", default="", help="comma list of attacks to really run: gcg,autodan")
    ap.add_argument("--gcg-steps", type=int, default=4)
    ap.add_argument("--gcg-width", type=int, default=32)
    ap.add_argument("--gcg-topk", type=int, default=64)
    ap.add_argument("--population", type=int, default=16)
    ap.add_argument("--generations", type=int, default=2)
    args = ap.parse_args()
    real = {a.strip() for a in args.run.split(",") if a.strip()}

    from refusalscope.compute import count_params
    from refusalscope.models.handle import ModelHandle
    from refusalscope.models.registry import size_fields

    handle = ModelHandle.load(args.model)
    p = count_params(handle.model, trained=False)
    sizes = size_fields(handle)
    print(f"model {args.model}: loaded {handle.n_params():,} params (old N); body "
          f"{p.body:,}, head {p.head:,}, embedding {p.embedding:,} (tied as loaded: {p.tied}); "
          f"released {sizes['params_released']:,}, non-embedding "
          f"{sizes['params_non_embedding']:,}")
    rows = []
    for name, fn in (("LoRA cell (16 pairs x 16 steps, batch 4, max_len 128)",
                      lambda: lora_cell(handle, args)),
                     (f"GCG (steps {args.gcg_steps}, width {args.gcg_width}, top-k "
                      f"{args.gcg_topk})", lambda: gcg_run(handle, args, "gcg" in real)),
                     (f"AutoDAN (population {args.population}, generations "
                      f"{args.generations}, no early stop)",
                      lambda: autodan_run(handle, args, "autodan" in real))):
        t0 = time.perf_counter()
        led, old, how = fn()
        rows.append((name, how, led, old, time.perf_counter() - t0))
    print("\n| attack | counts | tokens fwd / bwd | logit rows | old FLOPs | ledger FLOPs "
          "| old / ledger |")
    print("|---|---|---|---|---|---|---|")
    for name, how, led, old, _ in rows:
        print(f"| {name} | {how} | {led.forward_tokens:,} / {led.backward_tokens:,} | "
              f"{led.logit_rows:,} | {old:.4g} | {led.flops:.4g} | {old / led.flops:.3f} |")
    print("\nseconds: " + ", ".join(f"{n.split(' ')[0]} {s:.0f}" for n, _, _, _, s in rows))


if __name__ == "__main__":
    main()
