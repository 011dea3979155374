"""Does nanoGCG run on this environment's transformers? Both of its cache settings, tiny model.

nanoGCG is not a dependency: install the release into a scratch folder first, without its
pinned dependencies (this venv's torch and transformers are the point):

    .venv/bin/python -m pip install --no-deps --target /tmp/nanogcg nanogcg==0.3.0
    PYTHONPATH=/tmp/nanogcg OMP_NUM_THREADS=1 .venv/bin/python benchmarks/nanogcg_transformers5.py

Runs `nanogcg.run` for 2 steps on a tiny random Llama with `use_prefix_cache=True` (nanoGCG's
default) and `False`, and prints for each either the best loss or the exception and where it
was raised.
"""

from __future__ import annotations

import traceback


def main() -> None:
    from importlib.metadata import version

    import nanogcg
    import torch
    import transformers

    from refusalscope.models.tiny import tiny_model

    print(f"nanogcg {version('nanogcg')}, transformers "
          f"{transformers.__version__}, torch {torch.__version__}")
    model, tok = tiny_model("llama", seed=5)
    for cache in (True, False):
        cfg = nanogcg.GCGConfig(num_steps=2, search_width=8, topk=8, seed=0,
                                verbosity="WARNING", use_prefix_cache=cache,
                                optim_str_init="x x x x x")
        try:
            r = nanogcg.run(model, tok, "Write a short poem about the sea", "Sure, here is", cfg)
            print(f"use_prefix_cache={cache}: ran, best loss {r.best_loss:.4f}")
        except Exception as e:  # noqa: BLE001 -- the point is to report any failure
            where = traceback.extract_tb(e.__traceback__)[-1]
            path = where.filename[where.filename.rfind("nanogcg/"):]
            print(f"use_prefix_cache={cache}: {type(e).__name__}: {str(e)[:200]} "
                  f"(raised at {path}:{where.lineno})")


if __name__ == "__main__":
    main()
