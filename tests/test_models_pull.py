"""Pull and resolve, offline: fake wheels in a private wheelhouse, a tiny GGUF written here.

The tiny GGUF is a random 2-layer Llama written with the `gguf` package the way llama.cpp
writes one (q/k rows permuted), so converting it back must reproduce the logits exactly.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from refusalscope.errors import UserError
from refusalscope.models import convert
from refusalscope.models import pull as P
from refusalscope.models.registry import REGISTRY, ModelEntry

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_PARTS = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
          "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
          "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
          "post_attention_layernorm": "ffn_norm"}
TinyGGUF = tuple[Path, Any]  # (path of the .gguf, the HF model it was written from)
_TOP = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight"}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (transformers' GGUF loader undoes it)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def write_tiny_gguf(path: Path, seed: int = 0, chat_template: str | None = TEMPLATE) -> Any:
    """Write a random tiny Llama (byte-level vocab of 259) as F32 GGUF; return the HF model."""
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tokens = list(bytes_to_unicode().values()) + ["he", "<|im_start|>", "<|im_end|>"]
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=16, intermediate_size=32,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2), w.add_context_length(64), w.add_embedding_length(16)
    w.add_feed_forward_length(32), w.add_head_count(2), w.add_head_count_kv(2)
    w.add_rope_dimension_count(8), w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5), w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2"), w.add_token_list(tokens), w.add_token_merges(["h e"])
    w.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    w.add_bos_token_id(len(tokens) - 2), w.add_eos_token_id(len(tokens) - 1)
    if chat_template:
        w.add_chat_template(chat_template)
    for key, t in model.state_dict().items():
        arr = t.detach().numpy().astype(np.float32)
        if key in _TOP:
            w.add_tensor(_TOP[key], arr)
            continue
        layer, mod = key.removeprefix("model.layers.").removesuffix(".weight").split(".", 1)
        if mod in ("self_attn.q_proj", "self_attn.k_proj"):
            arr = _permute(arr, 2)
        w.add_tensor(f"blk.{layer}.{_PARTS[mod]}.weight", arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model


def make_wheel(wheelhouse: Path, dist: str, version: str, member: str, data: bytes) -> str:
    """A minimal wheel (a zip) named as pip names it; returns the requirement `dist==version`."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    whl = wheelhouse / f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(member, data)
    return f"{dist}=={version}"


def chunked_entry(wheelhouse: Path, blob: bytes, *, name: str = "tiny-test", n: int = 3,
                  sha256: str | None = "auto", is_chat: bool = True) -> ModelEntry:
    """Split `blob` into `n` fake wheels and return a registry entry pinning them."""
    cut = [len(blob) * i // n for i in range(n + 1)]
    pkgs, members = [], []
    for i in range(n):
        member = f"tiny_part{i + 1}/data/part{i + 1:02d}.bin"
        pkgs.append(make_wheel(wheelhouse, f"tiny-part{i + 1}", "0.1.0", member,
                               blob[cut[i]:cut[i + 1]]))
        members.append(member)
    digest = hashlib.sha256(blob).hexdigest() if sha256 == "auto" else sha256
    return ModelEntry(name=name, kind="pypi-gguf", description="tiny test model", is_chat=is_chat,
                      packages=tuple(pkgs), members=tuple(members), sha256=digest,
                      license="test", params="13K", chat_template=True)


@pytest.fixture
def wheelhouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private wheelhouse, so fake wheels never land in the shared one."""
    wh = tmp_path / "wheelhouse"
    monkeypatch.setenv("REFUSALSCOPE_WHEELHOUSE", str(wh))
    return wh


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> TinyGGUF:
    path = tmp_path / "src" / "tiny.gguf"
    path.parent.mkdir()
    return path, write_tiny_gguf(path)


@pytest.fixture
def tiny_entry(wheelhouse: Path, tiny_gguf: TinyGGUF,
               monkeypatch: pytest.MonkeyPatch) -> ModelEntry:
    entry = chunked_entry(wheelhouse, tiny_gguf[0].read_bytes())
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    return entry


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.exists() else []


# --- assembling and hashing -------------------------------------------------------------

def test_assemble_concatenates_chunks_in_order(wheelhouse: Path, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 41
    entry = chunked_entry(wheelhouse, blob, n=4)
    out = P.assemble(entry, tmp_path / "m")
    assert out.name == "model.gguf" and out.read_bytes() == blob
    assert _leftovers(tmp_path / "m") == ["model.gguf"]


def test_pull_refuses_hash_mismatch_and_leaves_no_trusted_file(
        wheelhouse: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = chunked_entry(wheelhouse, b"not the pinned bytes" * 100, name="bad-pin",
                          sha256="0" * 64)
    monkeypatch.setitem(REGISTRY, entry.name, entry)
    with pytest.raises(UserError, match="sha256 mismatch for bad-pin"):
        P.pull("bad-pin")
    assert _leftovers(P.model_dir("bad-pin")) == []  # no model.gguf, no .part, no hf/
    assert not P.is_pulled(entry)
    with pytest.raises(UserError, match="not pulled"):
        P.resolve("bad-pin", pull_if_missing=False)


def test_stale_gguf_with_wrong_hash_is_rebuilt(wheelhouse: Path, tmp_path: Path) -> None:
    blob = b"abc" * 1000
    entry = chunked_entry(wheelhouse, blob)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.gguf").write_bytes(b"tampered")
    assert P.assemble(entry, folder).read_bytes() == blob


def test_missing_member_is_a_user_error(wheelhouse: Path, tmp_path: Path) -> None:
    entry = chunked_entry(wheelhouse, b"x" * 99)
    broken = ModelEntry(**{**entry.__dict__, "members": (*entry.members[:-1], "nope.bin")})
    with pytest.raises(UserError, match="has no file 'nope.bin'"):
        P.assemble(broken, tmp_path / "m")
    assert _leftovers(tmp_path / "m") == []


def test_corrupt_wheel_is_deleted_and_reported(wheelhouse: Path, tmp_path: Path) -> None:
    entry = chunked_entry(wheelhouse, b"y" * 99)
    whl = next(wheelhouse.glob("tiny_part2-*.whl"))
    whl.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(UserError, match="not a valid wheel"):
        P.assemble(entry, tmp_path / "m")
    assert not whl.exists() and _leftovers(tmp_path / "m") == []


# --- conversion -------------------------------------------------------------------------

def test_pull_converts_once_to_a_trusted_folder(tiny_entry: ModelEntry, tiny_gguf: TinyGGUF,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = P.pull(tiny_entry.name)
    assert folder == P.hf_dir(tiny_entry.name) and P.is_pulled(tiny_entry)
    stamp = json.loads((folder / "refusalscope.json").read_text())
    assert stamp["sha256"] == tiny_entry.sha256 and stamp["name"] == "tiny-test"
    assert stamp["source"] == tiny_entry.source and stamp["transformers"]
    assert _leftovers(folder.parent) == ["hf", "model.gguf"]

    model = AutoModelForCausalLM.from_pretrained(str(folder))
    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = torch.tensor([[1, 5, 9, 256, 257, 258]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, tiny_gguf[1](ids).logits)
    assert tok.chat_template == TEMPLATE
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True).endswith("<|im_start|>assistant\n")

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("second pull must not convert again")

    monkeypatch.setattr(convert, "convert_gguf", boom)
    assert P.pull(tiny_entry.name) == folder


def test_interrupted_conversion_leaves_nothing_trusted(
        tiny_entry: ModelEntry, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(gguf: Path, out: Path, **kw: object) -> None:
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(convert, "_load_and_save", crash)
    with pytest.raises(KeyboardInterrupt):
        P.pull(tiny_entry.name)
    assert _leftovers(P.model_dir(tiny_entry.name)) == ["model.gguf"]  # hashed, so reusable
    assert not P.is_pulled(tiny_entry)


def test_unstamped_hf_folder_is_not_trusted_and_gets_rebuilt(tiny_entry: ModelEntry) -> None:
    folder = P.pull(tiny_entry.name)
    (folder / "refusalscope.json").unlink()
    assert not P.is_pulled(tiny_entry)
    assert P.pull(tiny_entry.name) == folder and P.is_pulled(tiny_entry)


def test_stamp_for_another_hash_is_not_trusted(tiny_entry: ModelEntry) -> None:
    folder = P.pull(tiny_entry.name)
    assert convert.is_trusted(folder, tiny_entry.sha256)
    assert not convert.is_trusted(folder, "f" * 64)


def test_trust_remote_code_is_off_unless_asked(tiny_gguf: TinyGGUF,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real = convert._load_and_save

    def spy(gguf: Path, out: Path, *, trust_remote_code: bool, arch: str) -> None:
        seen.append(trust_remote_code)
        real(gguf, out, trust_remote_code=trust_remote_code, arch=arch)

    monkeypatch.setattr(convert, "_load_and_save", spy)
    P.resolve(str(tiny_gguf[0]))
    assert seen == [False]


# --- resolve ----------------------------------------------------------------------------

def test_resolve_registry_name_pulls(tiny_entry: ModelEntry) -> None:
    r = P.resolve(tiny_entry.name)
    assert r.load_path == str(P.hf_dir(tiny_entry.name))
    assert (r.name, r.is_chat, r.sha256, r.entry) == ("tiny-test", True, tiny_entry.sha256,
                                                       tiny_entry)
    assert r.source.startswith("pypi:tiny-part1==0.1.0")


def test_resolve_gguf_file_converts_once(tiny_gguf: TinyGGUF) -> None:
    path = tiny_gguf[0]
    r = P.resolve(str(path))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert r.sha256 == digest and r.source == f"gguf:{path.resolve()}" and r.is_chat is None
    assert Path(r.load_path) == P.paths.models_dir() / f"gguf-{digest[:12]}" / "hf"
    assert convert.has_chat_template(Path(r.load_path))
    assert P.resolve(str(path)) == r


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_gguf_is_one_line_error(tiny_gguf: TinyGGUF, tmp_path: Path, cut: float) -> None:
    data = tiny_gguf[0].read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(UserError, match="corrupt or truncated GGUF") as err:
        P.resolve(str(bad))
    assert "\n" not in str(err.value)
    assert not P.paths.models_dir().exists() or not any(P.paths.models_dir().iterdir())


def test_not_a_gguf_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"hello world, not a model" * 10)
    with pytest.raises(UserError, match="corrupt or truncated GGUF"):
        P.resolve(str(bad))


def test_folder_without_weights(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(UserError, match="model folder without weights"):
        P.resolve(str(tmp_path / "m"))


def test_folder_with_weights_resolves_as_is(tiny_gguf: TinyGGUF) -> None:
    folder = Path(P.resolve(str(tiny_gguf[0])).load_path)
    r = P.resolve(str(folder))
    assert r.load_path == str(folder) and r.source == f"folder:{folder}"
    assert r.sha256 is not None  # read from the stamp


def test_hub_ids_and_aliases() -> None:
    r = P.resolve("someone/some-model")
    assert (r.load_path, r.source, r.is_chat) == ("someone/some-model", "hub:someone/some-model",
                                                  None)
    r = P.resolve("llama-7b")
    assert (r.load_path, r.is_chat) == ("meta-llama/Llama-2-7b-chat-hf", True)


@pytest.mark.parametrize("spec", ["gpt-5", "missing.gguf", "./no/such/folder"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(UserError):
        P.resolve(spec)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(UserError, match="smollm2-135m"):
        P.resolve("gpt-5")


def test_non_gguf_file_is_rejected(tmp_path: Path) -> None:
    f = tmp_path / "weights.txt"
    f.write_text("x")
    with pytest.raises(UserError, match="not a .gguf"):
        P.resolve(str(f))


def test_hub_pull_offline_is_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(UserError, match="could not download microsoft/phi-2"):
        P.pull("phi-2")


# --- describe ---------------------------------------------------------------------------

def test_describe_pulled_entry_measures_files(tiny_entry: ModelEntry) -> None:
    assert P.describe(tiny_entry.name)["pulled"] is False
    P.pull(tiny_entry.name)
    d = P.describe(tiny_entry.name)
    assert d["pulled"] is True and d["params"] == 13488
    assert (d["layers"], d["d_model"], d["vocab"], d["chat_template"]) == (2, 16, 259, True)
    assert d["architecture"] == "LlamaForCausalLM" and d["sha256"] == tiny_entry.sha256


def test_describe_gguf_reads_header_without_converting(tiny_gguf: TinyGGUF) -> None:
    d = P.describe(str(tiny_gguf[0]))
    assert (d["architecture"], d["layers"], d["d_model"], d["params"]) == ("llama", 2, 16, 13488)
    assert d["chat_template"] is True and d["pulled"] is False


def test_describe_hub_alias_without_network() -> None:
    d = P.describe("phi-2")
    assert (d["hub_id"], d["is_chat"], d["pulled"]) == ("microsoft/phi-2", False, False)
