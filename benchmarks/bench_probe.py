"""Probe extraction cost: hooks + position gather + HDF5 writing vs a bare forward pass, and memory.

One process, the same prompts in the same batches (longest first, tokenized inside every timed
loop) for every pass, after one warm-up batch:
  1. bare forward (`model(input_ids, attention_mask, use_cache=False, logits_to_keep=1)`,
     exactly the call the native back-end makes, without hooks);
  2. `activations.extract` into a new HDF5 file, once per compression asked for;
  3. the bare forward again (the machine is shared: the ratio uses the mean of both bare passes).
Peak RSS is sampled every 20 ms during the extraction passes; peak RSS minus the RSS before the
model was loaded must stay within the model's memory (bytes of its parameters and buffers) + 1 GiB.
`--no-bare` skips the bare passes (a memory-only run over many prompts). Prompts: harmful and harmless prompts of every built
split, alternating, the first `--n` (repeated if fewer exist).

    .venv/bin/python benchmarks/bench_probe.py --model smollm2-135m --n 2000
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path


def rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """Sample this process's RSS in a thread; `.peak` is the highest value seen."""

    def __init__(self, every: float = 0.02):
        self.every, self.peak, self._stop = every, rss(), threading.Event()

    def __enter__(self) -> PeakRSS:
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, rss())

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss())


def bench_prompts(n: int) -> list:  # type: ignore[type-arg]
    from dataclasses import replace

    from refusalscope.data.load import SPLITS, load_split

    harmful = [p for s in SPLITS for p in load_split(s)]
    harmless = [p for s in SPLITS for p in load_split(s, harmless=True)]
    mixed = [p for pair in zip(harmful, harmless) for p in pair]
    mixed += harmful[len(harmless):] + harmless[len(harmful):]
    out = []
    while len(out) < n:  # repeat with new ids only if the data holds fewer than n prompts
        k = len(out) // len(mixed)
        out += [replace(p, id=f"{p.id}#{k}") if k else p for p in mixed[: n - len(out)]]
    return out


def bare_pass(handle, prompts, batch_size: int) -> float:  # type: ignore[no-untyped-def]
    import torch

    from refusalscope.interp.activations import _order

    order, texts = _order(handle, prompts)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            enc = handle.tokenizer([texts[p.id] for p in order[start:start + batch_size]],
                                   return_tensors="pt", padding=True,
                                   add_special_tokens=not handle.has_chat_template)
            handle.model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                         use_cache=False, logits_to_keep=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--sites", default="resid_pre")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--positions", default="post-instruction")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--compression", default="lzf,gzip", help="comma list of lzf | gzip | none")
    ap.add_argument("--no-bare", action="store_true", help="extraction passes only (memory run)")
    ap.add_argument("--workdir", default=None, help="where the HDF5 files go (default: a tmp dir)")
    args = ap.parse_args()

    import torch

    from refusalscope.interp.activations import ProbeConfig, extract, meta_for, parse_sites
    from refusalscope.models.handle import ModelHandle

    prompts = bench_prompts(args.n)
    rss0 = rss()
    handle = ModelHandle.load(args.model)
    model = handle.base_model
    model_mem = sum(t.numel() * t.element_size()
                    for t in [*model.parameters(), *model.buffers()])
    print(f"{args.model}: {handle.n_layers} layers, d_model {handle.d_model}, "
          f"{torch.get_num_threads()} threads; model memory {model_mem / 2**30:.2f} GiB "
          f"(RSS after load {(rss() - rss0) / 2**30:.2f} GiB over the process before it); "
          f"{len(prompts)} prompts, batch {args.batch_size}")
    bare_pass(handle, prompts[: args.batch_size], args.batch_size)  # warm-up
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_probe_"))
    work.mkdir(parents=True, exist_ok=True)
    bare = [] if args.no_bare else [bare_pass(handle, prompts, args.batch_size)]
    rows = []
    for comp in args.compression.split(","):
        cfg = ProbeConfig(model=args.model, sites=parse_sites(args.sites), layers=args.layers,
                          positions=args.positions, dtype=args.dtype, compression=comp)
        meta = meta_for(handle, cfg)
        path = work / f"bench_{comp}_{time.time_ns()}.h5"
        with PeakRSS() as peak:
            t0 = time.perf_counter()
            extract(handle, prompts, path, meta, batch_size=args.batch_size)
            dt = time.perf_counter() - t0
        rows.append((comp, dt, peak.peak, path.stat().st_size, len(meta.layers) * len(meta.sites)))
        path.unlink()
    n = len(prompts)
    if not args.no_bare:
        bare.append(bare_pass(handle, prompts, args.batch_size))
        print(f"\nbare forward: {n * 2 / sum(bare):.2f} prompts/s (passes {bare[0]:.1f} s, "
              f"{bare[1]:.1f} s)")
    base = sum(bare) / len(bare) if bare else float("nan")
    print("| compression | extraction prompts/s | overhead vs bare | file | peak RSS - RSS before "
          "load | model memory + 1 GiB | within |")
    print("|---|---|---|---|---|---|---|")
    for comp, dt, pk, size, n_ds in rows:
        over = dt / base - 1
        used = pk - rss0
        limit = model_mem + 2**30
        verdict = "" if not bare else "(<= 15%)" if over <= 0.15 else "(> 15%)"
        print(f"| {comp} | {n / dt:.2f} | {over * 100:+.1f}% {verdict} "
              f"| {size / 2**20:.0f} MiB, {n_ds} datasets | {used / 2**30:.2f} GiB "
              f"| {limit / 2**30:.2f} GiB | {'yes' if used <= limit else 'NO'} |")


if __name__ == "__main__":
    main()
