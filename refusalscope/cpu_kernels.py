"""oneDNN linear layers for CPU inference, switched on for the length of a `with` block.

Decoding multiplies a handful of rows by each weight matrix. On the CPUs we measured (2-core
AMD EPYC, MKL 2024 from the torch wheel) MKL's sgemm is slow for 2-16 rows: a decode step of
qwen2.5-coder-0.5b costs 0.28 s at batch 2 against 0.16 s at batch 1, although both are bound
by reading the same weights. oneDNN's linear does not have that dip (0.18 s at batch 2,
0.24 s at batch 8; `benchmarks/bench_generate.py`). For prefill, hundreds of rows, MKL wins
(11.6 s against 16.4 s for 32 prompts of 60 tokens), so only products of at most `MAX_ROWS`
rows go to oneDNN. Results agree with MKL's to float32
rounding, not bit for bit.

The weights are copied once into oneDNN tensors for the block (one extra copy of the linear
weights in memory) and the modules' own `forward` comes back when the block exits. Forward
hooks on the linears still run; autograd does not go through the copies, so use it for
inference only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MAX_ROWS = 64
"""Above this many rows (prefill) MKL is the faster of the two again, so it is used."""


def usable(model: Any) -> bool:
    """True when every parameter is float32 on the CPU and this torch has oneDNN."""
    import torch

    params = list(model.parameters())
    return (bool(params) and torch.backends.mkldnn.is_available()
            and all(p.device.type == "cpu" and p.dtype == torch.float32 for p in params))


def _onednn_forward(module: Any) -> Any:
    import torch

    weight = module.weight.detach().to_mkldnn()
    bias = module.bias.detach().to_mkldnn() if module.bias is not None else None
    n_out = module.out_features

    def forward(x: Any) -> Any:
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        if flat.shape[0] > MAX_ROWS:
            return torch.nn.functional.linear(x, module.weight, module.bias)
        y = torch._C._nn.mkldnn_linear(flat.to_mkldnn(), weight, bias).to_dense()
        return y.reshape(*x.shape[:-1], n_out)

    return forward


@contextmanager
def onednn_linears(model: Any, enabled: bool = True) -> Iterator[bool]:
    """Route every `nn.Linear` of `model` through oneDNN inside the block.

    Yields whether it did: nothing changes unless `enabled` and `usable(model)`.

    Example:
        with onednn_linears(handle.model), torch.inference_mode():
            logits = handle.model(**batch).logits
    """
    import torch

    if not (enabled and usable(model)):
        yield False
        return
    linears = [m for m in model.modules() if type(m) is torch.nn.Linear]
    try:
        for m in linears:
            m.forward = _onednn_forward(m)
        yield True
    finally:
        for m in linears:
            m.__dict__.pop("forward", None)
