"""oneDNN linears: same numbers as MKL's within float32 rounding, hooks still fire, undone after."""

from __future__ import annotations

import torch

from refusalscope import cpu_kernels
from refusalscope.cpu_kernels import onednn_linears, usable
from refusalscope.models.tiny import tiny_handle


def _logits(model, ids):
    with torch.inference_mode():
        return model(input_ids=ids).logits


def test_onednn_matches_mkl_and_is_undone():
    h = tiny_handle("llama", seed=1)
    ids = torch.randint(5, 200, (3, 7))
    ref = _logits(h.model, ids)
    linears = [m for m in h.model.modules() if type(m) is torch.nn.Linear]
    with onednn_linears(h.model) as on:
        assert on and all("forward" in m.__dict__ for m in linears)
        torch.testing.assert_close(_logits(h.model, ids), ref, atol=1e-5, rtol=1e-5)
    assert not any("forward" in m.__dict__ for m in linears)
    torch.testing.assert_close(_logits(h.model, ids), ref)


def test_bias_hooks_and_large_inputs(monkeypatch):
    """Phi's linears have biases; a forward hook on a linear still sees every call; inputs
    of more than MAX_ROWS rows go through MKL and give the same numbers."""
    h = tiny_handle("phi", seed=2)
    ids = torch.randint(5, 200, (2, 9))
    ref = _logits(h.model, ids)
    seen = []
    lin = next(m for m in h.model.modules() if type(m) is torch.nn.Linear and m.bias is not None)
    handle = lin.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    try:
        for max_rows in (64, 4):  # 18 rows: oneDNN, then MKL
            monkeypatch.setattr(cpu_kernels, "MAX_ROWS", max_rows)
            with onednn_linears(h.model):
                torch.testing.assert_close(_logits(h.model, ids), ref, atol=1e-5, rtol=1e-5)
    finally:
        handle.remove()
    assert len(seen) == 2


def test_not_used_off_float32():
    h = tiny_handle("qwen2", seed=3)
    h.model.double()
    assert not usable(h.model)
    with onednn_linears(h.model) as on:
        assert not on
    with onednn_linears(h.model.float(), enabled=False) as on:
        assert not on
