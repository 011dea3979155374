import json

import h5py
import numpy as np
import pytest
import torch

from probe_fixtures import prompts, write_built
from refusalscope.errors import UserError
from refusalscope.interp.activations import (ProbeConfig, extract, iter_batches, meta_for,
                                             parse_layers, parse_sites, run_probe)
from refusalscope.interp.h5io import check_fingerprint, load_activations, open_probe, read_meta
from refusalscope.interp.identity import model_fingerprint
from refusalscope.interp.positions import gather, post_instruction_count
from refusalscope.models.tiny import tiny_handle


@pytest.fixture(scope="module")
def handle():
    return tiny_handle("qwen2", seed=3)


def test_parse_layers():
    assert parse_layers("all", 4) == [0, 1, 2, 3]
    assert parse_layers("0-2,5", 8) == [0, 1, 2, 5]
    assert parse_layers("3, 1,1", 4) == [1, 3]
    with pytest.raises(UserError, match="layer 3 out of range .*3 layers"):
        parse_layers("0-3", 3)
    for bad in ("x", "3-1", "-1", ""):
        with pytest.raises(UserError, match="bad --layers"):
            parse_layers(bad, 3)
    assert parse_sites("resid_pre, resid_post,resid_pre") == ("resid_pre", "resid_post")


def test_config_round_trip_and_validation():
    cfg = ProbeConfig(model="m", sites=("resid_pre", "attn_out"), layers="0-3", n=8,
                      dtype="float16", backend="nnsight")
    blob = json.loads(json.dumps(cfg.to_dict()))
    assert ProbeConfig.from_dict(blob) == cfg
    for kw, needle in [({"sites": ("resid_top",)}, "unknown site"),
                       ({"positions": "first"}, "unknown positions"),
                       ({"dtype": "int8"}, "unknown --dtype"), ({"backend": "tl"}, "unknown backend"),
                       ({"n": 0}, "at least 1"), ({"layers": "a-b"}, "bad --layers"),
                       ({"split": "train"}, "unknown split")]:
        with pytest.raises(UserError, match=needle):
            ProbeConfig(model="m", **kw)


def _meta(handle, **kw):
    cfg = ProbeConfig(model="tiny", **{"sites": ("resid_pre", "resid_post"), **kw})
    return meta_for(handle, cfg)


def test_schema_round_trip_and_values(handle, tmp_path):
    ps = prompts(3)
    meta = _meta(handle)
    path = extract(handle, ps, tmp_path / "a.h5", meta, batch_size=2)
    pf = open_probe(path)
    n_post = post_instruction_count(handle)
    assert pf.meta == meta == read_meta(path)
    assert pf.meta.fingerprint == model_fingerprint(handle)
    assert (pf.meta.n_layers, pf.meta.d_model, pf.meta.n_positions) == (3, 64, n_post)
    assert sorted(pf.prompt_ids) == sorted(p.id for p in ps)
    assert [int(y) for y in pf.labels] == [1 if i.startswith("h") else 0 for i in pf.prompt_ids]
    with h5py.File(path) as f:
        ds = f["acts/resid_post/2"]
        assert ds.shape == (6, n_post, 64) and ds.dtype == np.float32
        assert ds.chunks == (2, n_post, 64) and ds.compression == "lzf"
        assert f.attrs["complete"] and int(f.attrs["schema_version"]) == 1
    # each row equals that prompt run alone (no padding) through a plain forward hook
    text = {p.id: p.prompt for p in ps}
    for row in (0, 5):
        enc = handle.tokenizer(handle.format_prompt(text[pf.prompt_ids[row]]), return_tensors="pt",
                               add_special_tokens=False)
        seen = {}
        with torch.no_grad(), handle.hooks([("blocks.1.hook_resid_pre",
                                             lambda x, s: seen.setdefault("x", x.clone()))]):
            handle.model(**enc)
        want = gather(seen["x"], enc["attention_mask"], "post-instruction", n_post)[0]
        assert np.allclose(pf.acts("resid_pre", 1)[row], want.numpy(), atol=1e-5)
    x, y = load_activations(path, "resid_post", 0)
    assert x.shape == (6, n_post, 64) and list(y) == list(pf.labels)
    assert pf.torch("resid_pre", 0).shape == (6, n_post, 64)
    assert np.array_equal(pf.acts("resid_post", 0, rows=slice(1, 3)), x[1:3])
    with pytest.raises(UserError, match="no activations for site 'attn_out'"):
        pf.acts("attn_out", 0)


def test_streamed_equals_in_memory(handle, tmp_path):
    ps = prompts(3)
    meta = _meta(handle, positions="mean", dtype="float32", layers="0,2")
    path = extract(handle, ps, tmp_path / "s.h5", meta, batch_size=2)
    batches = list(iter_batches(handle, ps, sites=["resid_post"], layers=[0, 2], positions="mean",
                                n_post=meta.n_post, batch_size=len(ps)))
    assert len(batches) == 1
    order, acts = batches[0]
    pf = open_probe(path)
    assert pf.prompt_ids == [p.id for p in order]
    for layer in (0, 2):
        assert np.allclose(pf.acts("resid_post", layer), acts[("resid_post", layer)].numpy(),
                           atol=1e-5)


def test_float16_gzip(handle, tmp_path):
    meta = _meta(handle, dtype="float16", compression="gzip", positions="last")
    path = extract(handle, prompts(2), tmp_path / "h.h5", meta, batch_size=3)
    x, _ = load_activations(path, "resid_pre", 2)
    assert x.dtype == np.float16 and x.shape == (4, 1, 64)
    with h5py.File(path) as f:
        assert f["acts/resid_pre/2"].compression == "gzip"


def test_interrupted_extraction_leaves_nothing(handle, tmp_path):
    def boom(done, seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract(handle, prompts(3), tmp_path / "x.h5", _meta(handle), batch_size=2, on_batch=boom)
    assert list(tmp_path.iterdir()) == []


def test_never_overwrites(handle, tmp_path):
    path = extract(handle, prompts(1), tmp_path / "a.h5", _meta(handle, layers="0"))
    before = path.read_bytes()
    with pytest.raises(UserError, match="refusing to overwrite"):
        extract(handle, prompts(2), path, _meta(handle, layers="0"))
    assert path.read_bytes() == before


def test_bad_files(handle, tmp_path):
    good = extract(handle, prompts(2), tmp_path / "a.h5", _meta(handle, layers="0"))
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5 at all" * 100)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = [1, 2]
    unfinished = tmp_path / "unfinished.h5"
    unfinished.write_bytes(good.read_bytes())
    with h5py.File(unfinished, "a") as f:
        f.attrs["complete"] = False
    for path, needle in [(trunc, "not a readable HDF5|corrupt"), (junk, "not a readable HDF5"),
                         (other, "not a refusalscope probe file"), (unfinished, "unfinished"),
                         (tmp_path / "missing.h5", "no probe file")]:
        with pytest.raises(UserError, match=needle):
            load_activations(path, "resid_pre", 0)
    check_fingerprint(good, model_fingerprint(handle))
    with pytest.raises(UserError, match="computed on another model"):
        check_fingerprint(good, model_fingerprint(tiny_handle("qwen2", seed=4)))


def test_resid_mid_on_parallel_blocks_is_user_error():
    with pytest.raises(UserError, match="no resid_mid"):
        meta_for(tiny_handle("phi"), ProbeConfig(model="phi", sites=("resid_mid",)))


def test_run_probe_writes_run_folder(handle):
    write_built()
    cfg = ProbeConfig(model="tiny", n=2, layers="1", sites=("resid_post",))
    run = run_probe(cfg, handle=handle, batch_size=3)
    assert run.manifest.status == "success" and run.manifest.command == "probe"
    assert run.manifest.config == cfg.to_dict()
    rows = [json.loads(line) for line in run.file("prompts.jsonl").read_text().splitlines()]
    pf = open_probe(run.file("activations.h5"))
    assert [r["id"] for r in rows] == pf.prompt_ids
    assert sorted(pf.prompt_ids) == ["h0", "h1", "l0", "l1"]
    assert pf.meta.split == "direction" and pf.meta.layers == (1,)


def test_bfloat16_model_activations_are_stored(tmp_path):
    h = tiny_handle("llama")
    h.model.to(torch.bfloat16)
    path = extract(h, prompts(1), tmp_path / "b.h5", _meta(h, layers="1", positions="last"))
    x, _ = load_activations(path, "resid_post", 1)
    assert x.dtype == np.float32 and np.isfinite(x).all() and np.abs(x).max() > 0
