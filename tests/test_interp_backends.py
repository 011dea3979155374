import numpy as np
import pytest
import torch

from probe_fixtures import prompts
from refusalscope.errors import UserError
from refusalscope.interp.activations import ProbeConfig, extract, meta_for
from refusalscope.interp.backends import open_backend
from refusalscope.interp.h5io import open_probe
from refusalscope.models.sites import Site
from refusalscope.models.tiny import tiny_handle

TEXTS = ["Write a short poem about the sea and the wind.", "hello", "Explain photosynthesis."]


def _capture(handle, backend, kinds):
    enc = handle.tokenizer([handle.format_prompt(t) for t in TEXTS], return_tensors="pt",
                           padding=True, add_special_tokens=False)
    assert (enc["attention_mask"] == 0).any()  # left padding is part of what must agree
    sites = [Site(layer, k) for layer in range(handle.n_layers) for k in kinds]
    with open_backend(handle, backend) as capture:
        acts = capture(dict(enc), sites, lambda x: x)
    return acts, enc["attention_mask"].bool()


@pytest.mark.parametrize("arch,backend", [("qwen2", "transformer-lens"), ("qwen2", "nnsight"),
                                          ("gemma3_text", "transformer-lens"),
                                          ("phi", "nnsight")])
def test_backends_agree_with_native(arch, backend):
    kinds = ("resid_pre", "resid_post")
    want, mask = _capture(tiny_handle(arch, seed=1), "native", kinds)
    # a fresh handle: the transformer-lens bridge rewires the model it wraps
    got, _ = _capture(tiny_handle(arch, seed=1), backend, kinds)
    assert set(got) == set(want) == {(k, layer) for k in kinds for layer in range(3)}
    for key in want:
        a, b = want[key][mask], got[key][mask]
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (key, (a - b).abs().max())
        assert a.abs().max() > 1e-3  # a real activation, not zeros on both sides


def test_nnsight_reads_every_site_like_native():
    kinds = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")
    want, mask = _capture(tiny_handle("llama", seed=2), "native", kinds)
    got, _ = _capture(tiny_handle("llama", seed=2), "nnsight", kinds)
    for key in want:
        assert torch.allclose(want[key][mask], got[key][mask], atol=1e-5, rtol=1e-5), key


def test_file_from_nnsight_equals_native_file(tmp_path):
    paths = {}
    for backend in ("native", "nnsight"):
        h = tiny_handle("qwen2", seed=1)
        cfg = ProbeConfig(model="tiny", sites=("resid_pre", "resid_post"), backend=backend)
        paths[backend] = extract(h, prompts(2), tmp_path / f"{backend}.h5", meta_for(h, cfg),
                                 batch_size=3)
    a, b = open_probe(paths["native"]), open_probe(paths["nnsight"])
    assert a.prompt_ids == b.prompt_ids and b.meta.backend == "nnsight"
    for layer in range(3):
        assert np.allclose(a.acts("resid_post", layer), b.acts("resid_post", layer), atol=1e-5)


def test_unknown_backend_and_missing_site():
    h = tiny_handle("phi")
    with pytest.raises(UserError, match="unknown backend"):
        with open_backend(h, "pyvene"):
            pass
    enc = h.tokenizer(["hi"], return_tensors="pt")
    with open_backend(h, "nnsight") as capture:
        with pytest.raises(UserError, match="no resid_mid"):
            capture(dict(enc), [Site(0, "resid_mid")], lambda x: x)


@pytest.mark.slow
def test_backends_agree_on_smollm2(smollm2_home):
    from refusalscope.models.handle import ModelHandle

    kinds = ("resid_pre", "resid_post")
    want, mask = _capture(ModelHandle.load("smollm2-135m"), "native", kinds)
    for backend in ("transformer-lens", "nnsight"):
        got, _ = _capture(ModelHandle.load("smollm2-135m"), backend, kinds)
        assert set(got) == set(want)
        for key in want:
            a, b = want[key][mask], got[key][mask]
            # eager (bridge) vs sdpa (native) attention: fp32 reordering only
            assert torch.allclose(a, b, atol=1e-3, rtol=1e-4), (backend, key,
                                                                (a - b).abs().max())
