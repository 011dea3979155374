"""Probe extraction cost: hooks + position gather + HDF5 writing vs a bare forward pass, and memory.

One process, the same prompts in the same batches (longest first). The machine is shared, so the
two are timed *paired, batch by batch*: each tokenized batch runs once as a bare forward
(`model(input_ids, attention_mask, use_cache=False, logits_to_keep=1)`, exactly the call the
native back-end makes, without hooks) and once through the extraction step (hooks, position
gather, `ProbeWriter.write` into a new HDF5 file), in alternating order; tokenization is outside
both timers, the file's final close inside the extraction total. One warm-up batch first.
A second pass (`--no-bare` skips the paired one) runs the real `activations.extract` over all
prompts and samples peak RSS every 20 ms: peak RSS minus the RSS before the model was loaded must
stay within the model's memory (bytes of its parameters and buffers) + 1 GiB.
Prompts: harmful and harmless prompts of every built split, alternating, the first `--n`
(repeated with new ids if fewer exist).

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


def paired_pass(handle, prompts, meta, path: Path, batch_size: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(bare seconds, extraction seconds) over all batches, timed pair by pair."""
    import torch

    from refusalscope.interp.activations import _order
    from refusalscope.interp.backends import open_backend
    from refusalscope.interp.h5io import ProbeWriter
    from refusalscope.interp.positions import gather
    from refusalscope.models.sites import Site

    order, texts = _order(handle, prompts)
    sites = [Site(layer, kind) for kind in meta.sites for layer in meta.layers]
    bare = ext = 0.0
    writer = ProbeWriter(path, meta, [p.id for p in order], [1] * len(order),
                         [p.prompt for p in order], batch_size=batch_size)
    with open_backend(handle, "native") as capture, torch.inference_mode():
        for i, start in enumerate(range(0, len(order), batch_size)):
            enc = dict(handle.tokenizer([texts[p.id] for p in order[start:start + batch_size]],
                                        return_tensors="pt", padding=True,
                                        add_special_tokens=not handle.has_chat_template))
            mask = enc["attention_mask"]

            def run_bare() -> float:
                t0 = time.perf_counter()
                handle.model(input_ids=enc["input_ids"], attention_mask=mask, use_cache=False,
                             logits_to_keep=1)
                return time.perf_counter() - t0

            def run_ext() -> float:
                t0 = time.perf_counter()
                acts = capture(enc, sites, lambda x: gather(x, mask, meta.positions, meta.n_post))
                writer.write(start, acts)
                return time.perf_counter() - t0

            if i % 2:
                ext += run_ext()
                bare += run_bare()
            else:
                bare += run_bare()
                ext += run_ext()
    t0 = time.perf_counter()
    writer.close()
    return bare, ext + time.perf_counter() - t0


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
    ap.add_argument("--no-bare", action="store_true", help="skip the paired timing (memory run)")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory pass")
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
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_probe_"))
    work.mkdir(parents=True, exist_ok=True)
    comps = args.compression.split(",")

    def meta(comp: str):  # type: ignore[no-untyped-def]
        return meta_for(handle, ProbeConfig(model=args.model, sites=parse_sites(args.sites),
                                            layers=args.layers, positions=args.positions,
                                            dtype=args.dtype, compression=comp))

    def fresh(tag: str) -> Path:
        return work / f"bench_{tag}_{time.time_ns()}.h5"

    n = len(prompts)
    if not args.no_bare:
        warm = fresh("warm")
        paired_pass(handle, prompts[: args.batch_size], meta(comps[0]), warm, args.batch_size)
        warm.unlink()
        print("\n| compression | bare forward prompts/s | extraction prompts/s | overhead |")
        print("|---|---|---|---|")
        for comp in comps:
            path = fresh(comp)
            bare, ext = paired_pass(handle, prompts, meta(comp), path, args.batch_size)
            path.unlink()
            over = ext / bare - 1
            print(f"| {comp} | {n / bare:.2f} | {n / ext:.2f} | {over * 100:+.1f}% "
                  f"({'<=' if over <= 0.15 else '>'} 15%) |")
    if args.no_memory:
        return
    path = fresh("mem")
    with PeakRSS() as peak:
        t0 = time.perf_counter()
        m = meta(comps[0])
        extract(handle, prompts, path, m, batch_size=args.batch_size)
        dt = time.perf_counter() - t0
    used, limit = peak.peak - rss0, model_mem + 2**30
    print(f"\nmemory: extract() of {n} prompts x {len(m.layers) * len(m.sites)} datasets "
          f"({comps[0]}, {path.stat().st_size / 2**20:.0f} MiB file) in {dt:.0f} s "
          f"({n / dt:.2f} prompts/s): peak RSS - RSS before load = {used / 2**30:.2f} GiB; "
          f"model memory + 1 GiB = {limit / 2**30:.2f} GiB: {'within' if used <= limit else 'OVER'}")
    path.unlink()

if __name__ == "__main__":
    main()
